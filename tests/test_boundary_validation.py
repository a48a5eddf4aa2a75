"""Client mistakes are 400s in the caller's protocol naming the field, through a real gateway;
what no endpoint handles (unknown paths, wrong methods, an unexpected exception) is answered in
the shape of the protocol the path belongs to; the admin API bounds its bodies and names."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "m1", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m1", "input": "hi"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeUpstream]]:
    """One gateway for the module (each test only sends requests that must be refused, or
    checks its own effects)."""
    extra = "[server]\nresponses_retention_days = 1"
    with FakeUpstream(dialect="openai") as up, Gateway(tmp_path_factory.mktemp("gw"), catalog_for(up, extra=extra)) as gw:
        yield gw, up


@pytest.fixture
def gw(shared: tuple[Gateway, FakeUpstream]) -> Gateway:
    return shared[0]


@pytest.fixture
def upstream(shared: tuple[Gateway, FakeUpstream]) -> FakeUpstream:
    return shared[1]


@pytest.fixture
def own_gw(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway of the test's own (for a test that changes the app)."""
    with FakeUpstream(dialect="openai") as up, Gateway(tmp_path, catalog_for(up)) as gateway:
        yield gateway


def untouched(gw: Gateway, upstream: FakeUpstream, before: tuple[int, int]) -> bool:
    """Nothing reached the upstream or the ledger since ``before`` (see ``counts``)."""
    return counts(gw, upstream) == before


def counts(gw: Gateway, upstream: FakeUpstream) -> tuple[int, int]:
    return len(upstream.requests), len(gw.ledger())


def post(gw: Gateway, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or gw.key}"}
    return httpx.post(gw.base_url + path, json=body, headers=headers, timeout=30)


def openai_error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def anthropic_error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


# --------------------------------------------------------------------------- known 500s


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"messages": [{"role": {}, "content": "x"}]}, "messages[0].role",
         "expected one of system, user, assistant, tool, developer"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}]}, "messages[1].role",
         "expected one of"),
        ({"reasoning_effort": ["high"]}, "reasoning_effort", "expected a string"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text",
         "expected a string"),
        ({"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]},
         "tools[0].function.description", "expected a string"),
        ({"stop": [1]}, "stop[0]", "expected a string"),
        ({"metadata": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
         "metadata.a[0]", "nested deeper than 64"),
    ],
)
def test_chat_completions(gw: Gateway, upstream: FakeUpstream, fields: dict[str, Any], param: str, says: str) -> None:
    before = counts(gw, upstream)
    error = openai_error(post(gw, "/v1/chat/completions", {**CHAT, **fields}), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith(param) and error["message"].startswith(param)
    assert says in error["message"]
    assert untouched(gw, upstream, before)


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"tools": 5}, "tools", "expected an array"),
        ({"include": 5}, "include", "expected an array"),
        ({"tools": [{"type": "function", "name": "f", "description": 5}]}, "tools[0].description", "expected a string"),
        ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}, "input[0].content[0].text",
         "expected a string"),
        ({"input": [{"role": "assistant", "content": [{"type": "output_text", "text": {}}]}]},
         "input[0].content[0].text", "expected a string"),
        ({"previous_response_id": 5}, "previous_response_id", "expected a string"),
        ({"previous_response_id": {"id": "resp_1"}}, "previous_response_id", "expected a string"),
        ({"previous_response_id": "resp_\x00"}, "previous_response_id", "NUL"),
        ({"tools": [{"type": "namespace", "tools": []}]}, "tools[0].name", "field required"),
        ({"reasoning": {"effort": ["high"]}}, "reasoning.effort", "expected a string"),
        ({"input": [{"type": "reasoning", "summary": 5}]}, "input[0].summary", "expected an array"),
    ],
)
def test_responses(gw: Gateway, upstream: FakeUpstream, fields: dict[str, Any], param: str, says: str) -> None:
    before = counts(gw, upstream)
    error = openai_error(post(gw, "/v1/responses", {**RESPONSES, **fields}), 400)
    assert error["param"] == param and error["message"].startswith(f"{param}: ")
    assert says in error["message"]
    assert untouched(gw, upstream, before)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"output_config": {"effort": {"level": "high"}}}, "output_config.effort", "expected a string"),
        ({"messages": [{"role": {}, "content": "x"}]}, "messages.0.role", "expected one of user, assistant, system"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}]}, "messages.0.content.0.text",
         "expected a string"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "expected a string or a list"),
        ({"tools": [{"name": "f", "input_schema": {}, "description": 5}]}, "tools.0.description", "expected a string"),
        ({"system": [{"type": "text", "text": "\x00", "cache_control": 5}]}, "system.0.cache_control",
         "expected an object"),
    ],
)
def test_anthropic_messages(gw: Gateway, upstream: FakeUpstream, path: str, fields: dict[str, Any], field: str,
                            says: str) -> None:
    before = counts(gw, upstream)
    error = anthropic_error(post(gw, path, {**MESSAGES, **fields}), 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}: ") and says in error["message"]
    assert untouched(gw, upstream, before)


def test_unknown_fields_and_unicode_are_still_welcome(gw: Gateway, upstream: FakeUpstream) -> None:
    """Lenient on what oneplan does not read: clients add fields all the time."""
    upstream.reply("fine")
    odd = {"x_future_option": {"nested": [1, 2, {"deep": True}]}, "\u00e9\u00e8": None}
    text = "caf\u00e9 \U0001f600 \u202e"
    chat = {**CHAT, **odd, "messages": [{"role": "user", "content": text, "name": "bob", "x": 1}]}
    assert post(gw, "/v1/chat/completions", chat).status_code == 200
    assert post(gw, "/v1/messages", {**MESSAGES, **odd, "container": "c1"}).status_code == 200
    assert post(gw, "/v1/responses", {**RESPONSES, **odd, "background": False}).status_code == 200


# --------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    ("method", "path", "shape", "status"),
    [
        ("GET", "/v1/messages", "anthropic", 405),
        ("PUT", "/v1/messages", "anthropic", 405),
        ("GET", "/v1/messages/count_tokens", "anthropic", 405),
        ("GET", "/v1/messages/nothing", "anthropic", 404),
        ("GET", "/v1/chat/completions", "openai", 405),
        ("DELETE", "/v1/chat/completions", "openai", 405),
        ("GET", "/v1/nothing-here", "openai", 404),
        ("GET", "/v1/responses", "openai", 405),
        ("PATCH", "/v1/responses/resp_1", "openai", 405),
        ("POST", "/admin/usage", "openai", 405),
    ],
)
def test_unrouted_requests_answer_in_the_paths_protocol(gw: Gateway, method: str, path: str, shape: str,
                                                        status: int) -> None:
    reply = httpx.request(method, gw.base_url + path, headers={"authorization": f"Bearer {gw.key}"})
    error = anthropic_error(reply, status) if shape == "anthropic" else openai_error(reply, status)
    if status == 405:
        assert error["type"] == "invalid_request_error"
        assert method in error["message"] and reply.headers["allow"] in error["message"]
    else:
        assert error["type"] == "not_found_error" and path in error["message"]


def test_patch_on_a_stored_response_lists_both_methods(gw: Gateway) -> None:
    reply = httpx.patch(gw.base_url + "/v1/responses/resp_1")
    assert set(reply.headers["allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}


def test_stored_response_ids_are_checked_before_the_database(gw: Gateway) -> None:
    for bad in ("resp_%00", "x" * 300, "resp_%1b"):
        reply = httpx.get(f"{gw.base_url}/v1/responses/{bad}", headers={"authorization": f"Bearer {gw.key}"})
        assert openai_error(reply, 404)["param"] == "response_id"


def receive(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection")
    return data


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += receive(sock)
    return head + b"\r\n\r\n" + body


def raw_exchange(gw: Gateway, request: bytes) -> tuple[bytes, bool]:
    """Send one HTTP/1.1 request on a fresh connection: the answer, and whether the connection
    still serves a second request afterwards (else the server closed it)."""
    with socket.create_connection(("127.0.0.1", gw.thread.port), timeout=10) as sock:
        sock.sendall(request)
        answer = read_answer(sock)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            reused = read_answer(sock).startswith(b"HTTP/1.1 200")
        except OSError:
            reused = False
    return answer, reused


def test_unexpected_exceptions_are_500s_in_the_callers_protocol(own_gw: Gateway) -> None:
    """Routes that raise something nobody expected: on Starlette's routes the answer says
    ``connection: close`` and the connection is closed; on the hot POST path it is kept."""

    gw = own_gw

    async def boom(request: Request) -> None:
        raise RuntimeError("a bug")

    front = gw.thread.server.config.app
    front.app.router.routes[:0] = [Route("/v1/messages/boom", boom), Route("/v1/boom", boom)]
    front.hot["/v1/messages/hot-boom"] = boom

    answer, reused = raw_exchange(gw, b"GET /v1/messages/boom HTTP/1.1\r\nhost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"connection: close" in head.lower() and not reused
    assert httpx.Response(500, content=body).json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal error in oneplan; the operator's log has the details."},
    }
    openai = httpx.get(gw.base_url + "/v1/boom")
    assert openai_error(openai, 500)["type"] == "api_error" and openai.headers["connection"] == "close"

    answer, reused = raw_exchange(gw, b"POST /v1/messages/hot-boom HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b'"type":"error"' in body and reused


# --------------------------------------------------------------------------- admin API


def admin(gw: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.admin_key}", **kwargs.pop("headers", {})}
    return httpx.request(method, gw.base_url + path, headers=headers, timeout=30, **kwargs)


def test_admin_bodies_are_limited_to_64_kb(gw: Gateway) -> None:
    big = {"name": "bob", "plan": "pro", "padding": "x" * 70_000}
    error = openai_error(admin(gw, "POST", "/admin/users", json=big), 413)
    assert error["type"] == "request_too_large" and "65536" in error["message"]
    # Without a content-length too (chunked): the limit holds as the body arrives.
    chunks = iter([b'{"name": "bob", "plan": "pro", "padding": "', b"x" * 40_000, b"x" * 40_000, b'"}'])
    assert admin(gw, "POST", "/admin/users", content=chunks).status_code == 413
    assert admin(gw, "POST", "/admin/users", json={"name": "bob", "plan": "pro", "note": "x" * 60_000}).status_code == 201


@pytest.mark.parametrize(
    ("path", "body", "param", "says"),
    [
        ("/admin/users", {"name": "bo\x00b", "plan": "pro"}, "name", "NUL"),
        ("/admin/users", {"name": "b" * 201, "plan": "pro"}, "name", "at most 200 characters"),
        ("/admin/users", {"name": "bob\n", "plan": "pro"}, "name", "control characters"),
        ("/admin/users", {"name": "", "plan": "pro"}, "name", ""),
        ("/admin/users", {"name": 5, "plan": "pro"}, "name", "expected a string"),
        ("/admin/users", {"name": "bob"}, "plan", "field required"),
        ("/admin/users", {"name": "bob", "plan": "gold"}, "plan", "no plan 'gold'"),
        ("/admin/users", {"name": "alice", "plan": "pro"}, "name", "already exists"),
        ("/admin/keys", {"user": "ali\x00ce"}, "user", "NUL"),
        ("/admin/keys", {"user": "nobody"}, "user", "no user named 'nobody'"),
        ("/admin/keys", {"user": "alice", "expires_at": "tomorrow"}, "expires_at", "expected a number"),
        ("/admin/keys", {"user": "alice", "expires_at": [1]}, "expires_at", "expected a number"),
    ],
)
def test_admin_payloads_name_the_field(gw: Gateway, path: str, body: Any, param: str, says: str) -> None:
    error = openai_error(admin(gw, "POST", path, json=body), 400)
    assert error["param"] == param and says in error["message"]


def test_admin_names_in_paths_and_queries_are_checked(gw: Gateway) -> None:
    for path, param in [("/admin/keys?user=a%00b", "user"), ("/admin/usage?user=a%00b", "user"),
                        ("/admin/keys/key_%00", "key_id"), ("/admin/keys/" + "k" * 41, "key_id")]:
        method = "DELETE" if path.startswith("/admin/keys/") else "GET"
        assert openai_error(admin(gw, method, path), 400)["param"] == param, path
    assert openai_error(admin(gw, "GET", "/admin/usage?user=nobody"), 400)["param"] == "user"
    assert admin(gw, "GET", "/admin/keys?user=alice").json()["data"][0]["user"] == "alice"
