"""A whole answer, and a stream's closing frames, wait for the request's row to be in the
journal without a task waiting for it (``Answer.journal``, ``EventStream.journal``): the HTTP
protocol holds them back and writes them from the journal write's callback
(``Ledger.when_durable``). If that write fails, a whole answer is a 500 in the caller's
protocol's shape - never a 200 whose row could die with the process - and a stream is cut
before its end, on the hot path (uvicorn's HTTP protocol) and on the ASGI path alike; the next
tick answers as usual."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway


@contextmanager
def journal_unwritable(gw: Gateway) -> Iterator[None]:
    """Every journal write fails (EBADF) until the block ends, as on a disk that went away."""
    journal = gw.state.ledger.journal
    assert journal is not None
    fd = journal.segment.fd
    writable = os.dup(fd)
    read_only = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(read_only, fd)
        yield
    finally:
        os.dup2(writable, fd)
        os.close(read_only)
        os.close(writable)


@contextmanager
def journal_slow(gw: Gateway, seconds: float) -> Iterator[list[int]]:
    """Every journal write takes ``seconds`` more (a slow disk; the event loop waits in the
    write meanwhile); yields how many rows the journal holds so far."""
    journal = gw.state.ledger.journal
    assert journal is not None
    real = journal.append_lines
    written = [0]

    def slow(data: bytes, rows: int) -> None:
        time.sleep(seconds)
        real(data, rows)
        written[0] += rows

    journal.append_lines = slow  # type: ignore[method-assign]
    try:
        yield written
    finally:
        del journal.append_lines


def chat(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)


def test_an_answer_whose_row_cannot_be_journaled_is_a_500_on_the_hot_path(gateway: Gateway) -> None:
    client = chat(gateway)
    with journal_unwritable(gateway), pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 500
    assert refused.value.body["type"] == "api_error"  # type: ignore[index]
    messages = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    with journal_unwritable(gateway), pytest.raises(anthropic.InternalServerError) as refused_too:
        messages.messages.create(model="m1", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert refused_too.value.body["type"] == "error"  # type: ignore[index]  # Anthropic's shape
    # The next tick writes again, and the answer goes out.
    answered = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "again"}])
    assert answered.choices[0].message.content
    rows = {row["id"]: row for row in gateway.ledger()}
    # The refused answers were still charged as served (their rows reach the database from
    # memory); what the client saw is the 500, which the gateway logged.
    assert len(rows) == 3 and answered.id in rows
    assert all(row["status"] == "ok" for row in rows.values())


def test_an_answer_whose_row_cannot_be_journaled_is_a_500_on_the_asgi_path(gateway: Gateway) -> None:
    from oneplan.server.app import create_app

    app = create_app(gateway.state)  # the same state, answered through ASGI messages

    async def post(text: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.post(
                "/v1/chat/completions", headers={"authorization": f"Bearer {gateway.key}"},
                json={"model": "m1", "messages": [{"role": "user", "content": text}]},
            )

    async def stream(text: str) -> bytes:
        transport = httpx.ASGITransport(app=app)
        seen = b""
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            try:
                async with client.stream(
                    "POST", "/v1/chat/completions", headers={"authorization": f"Bearer {gateway.key}"},
                    json={"model": "m1", "messages": [{"role": "user", "content": text}], "stream": True},
                ) as answer:
                    async for piece in answer.aiter_bytes():
                        seen += piece
            except RuntimeError as exc:  # the app raised mid-stream: a server cuts the stream there
                assert "could not be journaled" in str(exc)
                return seen + b"<cut>"
        return seen

    with journal_unwritable(gateway):
        refused = gateway.run(post("hi"))
        cut = gateway.run(stream("hi"))
    assert refused.status_code == 500 and refused.json()["error"]["type"] == "api_error"
    assert cut.endswith(b"<cut>") and b"[DONE]" not in cut and b'"finish_reason":"stop"' not in cut
    answered = gateway.run(post("again"))
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"]
    assert gateway.run(stream("again")).endswith(b"data: [DONE]\n\n")


def test_a_stream_whose_row_cannot_be_journaled_never_ends_as_complete(gateway: Gateway) -> None:
    """The closing frames (``[DONE]``, Anthropic's ``message_stop``) wait for the row too: if
    the journal write fails, the stream is cut before its end, which the SDKs report as an error
    (the chunked body ends without its last chunk) instead of a complete answer."""
    client = chat(gateway)
    messages = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

    def openai_stream() -> None:
        list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}], stream=True))

    def anthropic_stream() -> None:
        with messages.messages.stream(model="m1", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
            stream.get_final_message()

    for read in (openai_stream, anthropic_stream):
        with journal_unwritable(gateway):
            # The SDKs' words for a chunked body that ended without its last chunk (raised by
            # the HTTP client as it reads, or wrapped by the SDK).
            assert how_it_ended(read) in ("RemoteProtocolError", "APIConnectionError")
        assert how_it_ended(read) == "complete"  # written again: the next stream ends as usual


def how_it_ended(read: Callable[[], None]) -> str:
    try:
        read()
    except Exception as exc:
        return type(exc).__name__
    return "complete"


def test_an_error_answer_and_a_refusal_leave_only_once_their_rows_are_journaled(
    tmp_path: Path, upstream: FakeUpstream,
) -> None:
    """Not only a 200: a request that failed upstream (a whole error answer, streamed or not)
    and a refusal are rows in the ledger too, and a ``kill -9`` right after the client saw them
    must not lose those rows (CI: 30 rows of 31 after a kill, one failed request's row lost). On
    a slow disk the answer waits for the journal write, so the client sees it only after."""
    plan = "[plans.pro]\nrequests_per_5h = 3\n[routing]\nretries = 0\n"
    with Gateway(tmp_path, catalog_for(upstream, plan=plan)) as gw:
        client = chat(gw)
        with journal_slow(gw, 0.3) as written:
            upstream.fault("500", times=2)
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
            assert written[0] == 1  # the failed request's row was in the journal before its error
            with pytest.raises(openai.APIStatusError):
                list(client.chat.completions.create(
                    model="m1", messages=[{"role": "user", "content": "hi"}], stream=True,
                ))
            assert written[0] == 2  # a stream that failed before its first byte: the same
            for _ in range(3):
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
            assert written[0] == 5
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
            assert written[0] == 6  # the refusal's row too
        statuses = sorted(row["status"] for row in gw.ledger())
        assert statuses == ["failed", "failed", "ok", "ok", "ok", "refused"]
