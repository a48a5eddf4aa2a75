"""A fake upstream that plays a one-tool-call coding agent, and a real ``oneplan serve`` before it.

``AgentUpstream`` answers from the conversation it is sent, not from a queue, so whatever extra
requests a CLI makes (titles, topic checks, memory extraction, retries) the agent loop still
goes: a request whose last user turn holds the test's prompt gets the scripted tool call; one
that already carries the tool's result gets the final text; anything else (a CLI's side
request) gets a short text.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import Answer, FakeUpstream, Fault
from tests.support.process import ServeProcess

SIDE_TEXT = "oneplan-e2e side answer"

_body: contextvars.ContextVar[Any] = contextvars.ContextVar("agent_upstream_body", default=None)


def has_tool_result(body: dict[str, Any]) -> bool:
    """Whether the conversation already answers a tool call (Chat ``tool`` message or an
    Anthropic ``tool_result`` block)."""
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        if message.get("role") == "tool":
            return True
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return True
    return False


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the user turns since the assistant last spoke (string content or text
    blocks): a client's reminder may follow the prompt as a user or system message."""
    texts: list[str] = []
    for message in reversed(body.get("messages") or ()):
        if not isinstance(message, dict) or message.get("role") == "assistant":
            break
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "\n".join(reversed(texts))


def tool_names(body: dict[str, Any]) -> list[str]:
    """Declared tool names, in Chat (``function.name``) or Anthropic (``name``) shape."""
    names = []
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        names.append(str(function.get("name")))
    return names


def tool_schema(body: dict[str, Any], name: str) -> dict[str, Any]:
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        if function.get("name") == name:
            schema = function.get("parameters", function.get("input_schema"))
            assert isinstance(schema, dict), f"tool {name!r} has no schema: {tool}"
            return schema
    raise AssertionError(f"no tool {name!r} among {tool_names(body)}")


class AgentUpstream(FakeUpstream):
    def __init__(self, dialect: str, *, prompt: str, tool_call: dict[str, Any], final_text: str) -> None:
        super().__init__(dialect=dialect)
        self.prompt = prompt
        self.tool_call = tool_call
        self.final_text = final_text

    def answer_for(self, body: Any) -> Answer:
        if not isinstance(body, dict) or not body.get("tools"):
            return Answer.make(SIDE_TEXT)
        if has_tool_result(body):
            return Answer.make(self.final_text)
        if self.prompt in last_user_text(body):
            return Answer.make(tool_calls=[self.tool_call])
        return Answer.make(SIDE_TEXT)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()  # aiohttp keeps the body: the base class reads it again
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        token = _body.set(body)
        try:
            return await super()._serve(request)
        finally:
            _body.reset(token)

    def _next(self) -> tuple[Fault | None, Answer]:
        fault, _queued = super()._next()
        return fault, self.answer_for(_body.get())

    @property
    def model_requests(self) -> list[dict[str, Any]]:
        """The bodies of the model calls the gateway forwarded."""
        endpoint = self.prefix + self.dialect.endpoint
        return [r.json for r in self.requests if r.path == endpoint and isinstance(r.json, dict)]

    @property
    def agent_requests(self) -> list[dict[str, Any]]:
        """The agent loop's model calls: the prompt, then the turns after the tool ran."""
        return [
            body for body in self.model_requests
            if body.get("tools") and (has_tool_result(body) or self.prompt in last_user_text(body))
        ]


def catalog(up: FakeUpstream, kind: str, *, dialect: str | None = None) -> str:
    """qwen3.5-plus (and a small qwen3.5-flash for haiku-class calls) on one provider, with
    the Claude names mapped onto them."""
    dialect_line = f'dialect = "{dialect}"' if dialect else ""
    return f"""
[providers.up]
kind = "{kind}"
{dialect_line}
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."qwen3.5-plus"]
provider = "up"
input_price = 0.8
output_price = 4.8

[models."qwen3.5-flash"]
provider = "up"
input_price = 0.2
output_price = 2.0

[aliases]
"claude-*haiku*" = "qwen3.5-flash"
"claude-*" = "qwen3.5-plus"

[plans.pro]
requests_per_5h = 1000
"""


@contextmanager
def oneplan(tmp_path: Path, config_text: str) -> Iterator[tuple[ServeProcess, str]]:
    """A real ``oneplan serve`` with the user ``alice`` created through the CLI: (server, key)."""
    config = tmp_path / "oneplan.toml"
    config.write_text(config_text)
    server = ServeProcess(config, tmp_path / "oneplan-data").start()
    try:
        created = server.cli("users", "create", "alice", "--plan", "pro")
        assert created.returncode == 0, created.stderr
        yield server, created.stdout.strip()
    finally:
        server.stop()


def ledger_totals(server: ServeProcess) -> dict[str, Any]:
    """Stop the server (SIGTERM flushes the ledger), then ask ``oneplan usage --json``."""
    assert server.terminate() == 0, server.output
    report = server.cli("usage", "--json")
    assert report.returncode == 0, report.stderr
    (alice,) = orjson.loads(report.stdout)["users"]
    return dict(alice["totals"])


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment with a fresh HOME: nothing of the developer's config leaks in.

    Any attempt to reach a host other than 127.0.0.1 goes to a proxy that refuses at once
    (port 9, discard), so a stray telemetry or update call fails fast instead of hanging.
    """
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    dead_proxy = "http://127.0.0.1:9"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "USER": os.environ.get("USER", "root"),
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "TMPDIR": str(tmp_path),
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "http_proxy": dead_proxy,
        "https_proxy": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.update(extra)
    return env
