"""The chat endpoints answered by the HTTP protocol itself (``server/hot.py``): the HTTP/1.1
behaviour uvicorn's own cycle gives every other route must hold on them too - pipelining,
HTTP/1.0, ``Expect: 100-continue`` - checked on the wire with a raw socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway


def chat_request(key: str, version: bytes = b"1.1", extra: bytes = b"") -> tuple[bytes, bytes]:
    body = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        b"POST /v1/chat/completions HTTP/%s\r\nhost: x\r\nauthorization: Bearer %s\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n%s\r\n" % (version, key.encode(), len(body), extra)
    )
    return head, body


def read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` whole answers (each with a content-length), as (head, body)."""
    data = b""
    out: list[tuple[bytes, bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} answers"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100 "):
            out.append((head, b""))
            continue
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        while len(data) < length:
            data += sock.recv(65536)
        out.append((head, data[:length]))
        data = data[length:]
    return out


def test_pipelined_chat_requests_are_answered_in_order_on_one_connection(tmp_path: Path, upstream: FakeUpstream) -> None:
    with Gateway(tmp_path, catalog_for(upstream)) as gw, socket.create_connection(("127.0.0.1", gw.thread.port), timeout=10) as sock:
        head, body = chat_request(gw.key)
        sock.sendall((head + body) * 3 + b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answers = read_answers(sock, 4)
        assert [h.split(b"\r\n")[0] for h, _ in answers] == [b"HTTP/1.1 200 OK"] * 4
        ids = [json.loads(b)["id"] for _, b in answers[:3]]
        assert len(set(ids)) == 3 and json.loads(answers[3][1]) == {"status": "ok"}
        assert all(b"connection: close" not in h.lower() for h, _ in answers)
        assert sorted(r["id"] for r in gw.ledger()) == sorted(ids)


def test_an_http_1_0_chat_request_is_answered_and_the_connection_closed(tmp_path: Path, upstream: FakeUpstream) -> None:
    with Gateway(tmp_path, catalog_for(upstream)) as gw, socket.create_connection(("127.0.0.1", gw.thread.port), timeout=10) as sock:
        head, body = chat_request(gw.key, version=b"1.0")
        sock.sendall(head + body)
        ((answer, reply),) = read_answers(sock, 1)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" in answer.lower()
        assert json.loads(reply)["choices"][0]["message"]["content"]
        assert sock.recv(65536) == b""  # closed by the server


def test_expect_100_continue_is_answered_before_the_body_is_sent(tmp_path: Path, upstream: FakeUpstream) -> None:
    with Gateway(tmp_path, catalog_for(upstream)) as gw, socket.create_connection(("127.0.0.1", gw.thread.port), timeout=10) as sock:
        head, body = chat_request(gw.key, extra=b"expect: 100-continue\r\n")
        sock.sendall(head)
        ((interim, _),) = read_answers(sock, 1)  # before any of the body
        assert interim == b"HTTP/1.1 100 Continue"
        sock.sendall(body)
        ((answer, reply),) = read_answers(sock, 1)
        assert answer.startswith(b"HTTP/1.1 200 ") and json.loads(reply)["object"] == "chat.completion"


def test_a_server_process_freezes_its_startup_heap_out_of_the_collector(tmp_path: Path, upstream: FakeUpstream) -> None:
    """``oneplan serve`` builds its gateway with ``settle_heap``: the collector never walks the
    startup heap again (full collections of it were the p99 under load: 80 -> 26 ms)."""
    script = f"""
import asyncio, gc
from pathlib import Path
from oneplan.server.run import build_app
catalog = Path({str(tmp_path / "c.toml")!r})
catalog.write_text({catalog_for(upstream)!r})
app = build_app(Path({str(tmp_path / "data")!r}), catalog, [])
before = gc.get_freeze_count()
async def main():
    await app.app.router.lifespan_context(app.app).__aenter__()
asyncio.run(main())
print(before, gc.get_freeze_count(), gc.get_threshold()[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after, young = map(int, done.stdout.split())
    assert before == 0 and after > 10_000 and young >= 10_000


def test_an_answer_renders_the_same_headers_on_both_paths_and_refuses_one_that_splits_the_head() -> None:
    import asyncio

    import pytest

    from oneplan.server.sse import Answer

    answer = Answer(b'{"ok":true}', {"X-Oneplan-Served-By": "m1 via fake", "ratelimit": '"5h";r=9'})
    block = answer.head_block()
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(answer({"type": "http"}, None, send))  # type: ignore[arg-type]
    asgi = {k: v for k, v in sent[0]["headers"]}  # type: ignore[attr-defined]
    wire = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if line)
    assert asgi == wire == {
        b"content-type": b"application/json", b"content-length": b"11",
        b"x-oneplan-served-by": b"m1 via fake", b"ratelimit": b'"5h";r=9',
    }
    assert sent[1]["body"] == b'{"ok":true}'
    for bad in ({"x-a": "v\r\nset-cookie: s=1"}, {"x-a": "v\nx"}, {"x a": "v"}, {"x-a:": "v"}):
        with pytest.raises(RuntimeError):
            Answer(b"{}", bad).head_block()


def test_the_head_check_refuses_exactly_what_uvicorns_own_patterns_refuse() -> None:
    """``splits_head`` (a table pass, with a fast path for the usual head) and ``head_block``
    against uvicorn's ``HEADER_RE`` / ``HEADER_VALUE_RE`` on random heads: every byte value,
    names and values alone and several to a head."""
    import random

    import pytest
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

    from oneplan.server.sse import Answer, splits_head

    rng = random.Random(17)

    def text(usual: bytes, size: int) -> bytes:
        return bytes(rng.randrange(256) if rng.random() < 0.04 else rng.choice(usual) for _ in range(size))

    refused = 0
    for _ in range(4000):
        pairs = [(text(b"abz-09XY", rng.randint(1, 9)), text(b"az 09;=,\"\t-", rng.randint(0, 9))) for _ in range(rng.randint(1, 4))]
        for name, value in pairs:
            expected = bool(HEADER_RE.search(name) or HEADER_VALUE_RE.search(value))
            assert splits_head(name, value) == expected, (name, value)
            refused += expected
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in pairs}
        if any(HEADER_RE.search(k.encode("latin-1")) or HEADER_VALUE_RE.search(v.encode("latin-1")) for k, v in headers.items()):
            with pytest.raises(RuntimeError):
                Answer(b"{}", headers).head_block()
        else:
            Answer(b"{}", headers).head_block()
    assert 300 < refused < 3000  # both outcomes were really tried


def test_an_answer_with_a_header_http_cannot_carry_is_a_500_in_the_callers_protocol(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    from typing import Any

    from oneplan.server.sse import Answer

    async def bad(request: Any) -> Answer:
        return Answer(b"{}", {"x-oneplan-served-by": "m\u4e00 via up"})  # not Latin-1

    with Gateway(tmp_path, catalog_for(upstream)) as gw, socket.create_connection(("127.0.0.1", gw.thread.port), timeout=10) as sock:
        gw.thread.server.config.app.hot["/v1/messages/hot-bad"] = bad
        sock.sendall(b"POST /v1/messages/hot-bad HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        ((head, body),) = read_answers(sock, 1)
        assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head.lower()
        assert json.loads(body)["error"]["type"] == "api_error"  # Anthropic's shape, as the path is
        assert sock.recv(65536) == b""


def test_operator_names_a_header_cannot_carry_are_percent_encoded_not_a_500(tmp_path: Path) -> None:
    """A model named in Chinese, or a quoted TOML key with a newline in it, is the operator's
    choice (a client cannot ask for a name with a control character, but a provider may have
    one): its answers are 200s, whole and streamed, with the name percent-encoded (UTF-8) in
    ``x-oneplan-served-by``, and the ledger keeps the name as written."""
    from urllib.parse import unquote

    import httpx

    with FakeUpstream(dialect="openai") as up:
        extra = f'[providers."云-1"]\nkind = "openai-compatible"\nbase_url = "{up.base_url}"\napi_key = "{up.api_key}"\n'
        extra += f'[providers."tab\\there"]\nkind = "openai-compatible"\nbase_url = "{up.base_url}"\napi_key = "{up.api_key}"\n'
        extra += '[models."通义-max"]\nprovider = "云-1"\n[models."müsli"]\nprovider = "tab\\there"\n'
        with Gateway(tmp_path, catalog_for(up, extra=extra)) as gw, httpx.Client(base_url=gw.base_url) as client:
            auth = {"authorization": f"Bearer {gw.key}"}
            for model, provider in (("通义-max", "云-1"), ("müsli", "tab\there")):
                for stream in (False, True):
                    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
                    reply = client.post("/v1/chat/completions", json=body, headers=auth)
                    assert reply.status_code == 200, reply.text
                    served = reply.headers["x-oneplan-served-by"]
                    assert served.isascii() and served.isprintable()
                    assert unquote(served) == f"model={model}; provider={provider}"
            assert [r["model"] for r in gw.ledger()][-4:] == ["通义-max"] * 2 + ["müsli"] * 2
