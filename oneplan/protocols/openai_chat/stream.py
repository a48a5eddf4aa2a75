"""OpenAI Chat Completions streams: canonical deltas to ``chat.completion.chunk`` frames."""

from __future__ import annotations

from typing import Any

import orjson

from oneplan.errors import OneplanError
from oneplan.protocols.base import StreamContext, StreamRenderer
from oneplan.protocols.canonical import Delta, Usage
from oneplan.protocols.openai_chat.render import openai_error_body, usage_body


class ChatChunkRenderer(StreamRenderer):
    """Canonical deltas to ``chat.completion.chunk`` frames, one frame per upstream chunk."""

    __slots__ = ("_finished", "_prefix", "_started", "_usage", "ctx")

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        # Every chunk shares id/object/created/model: encode that prefix once.
        head = orjson.dumps(
            {"id": ctx.response_id, "object": "chat.completion.chunk", "created": ctx.created, "model": ctx.model}
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":'
        self._usage: Usage | None = None
        self._finished = False
        self._started = False

    def _frame(self, choices: bytes, usage: bytes = b"") -> bytes:
        return self._prefix + choices + usage + b"}\n\n"

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def start(self) -> bytes:
        self._started = True
        return self._frame(self._choice({"role": "assistant", "content": ""}))

    def feed(self, delta: Delta) -> bytes:
        out = b""
        body: dict[str, Any] = {}
        if delta.reasoning:
            body["reasoning_content"] = delta.reasoning
        if delta.text:
            body["content"] = delta.text
        if delta.tool_calls:
            calls = []
            for tc in delta.tool_calls:
                call: dict[str, Any] = {"index": tc.index}
                if tc.id:
                    call["id"] = tc.id
                    call["type"] = "function"
                fn: dict[str, Any] = {"arguments": tc.arguments}
                if tc.name:
                    fn["name"] = tc.name
                call["function"] = fn
                calls.append(call)
            body["tool_calls"] = calls
        if body:
            out = self._frame(self._choice(body))
        if delta.finish_reason and not self._finished:
            self._finished = True
            out += self._frame(self._choice({}, delta.finish_reason))
        if delta.usage is not None:
            self._usage = delta.usage
        return out

    def finish(self) -> bytes:
        out = b""
        if not self._finished:
            self._finished = True
            out += self._frame(self._choice({}, "stop"))
        if self.ctx.include_usage:
            usage = orjson.dumps(usage_body(self._usage or Usage()))
            out += self._frame(b"[]", b',"usage":' + usage)
        return out + b"data: [DONE]\n\n"

    def fail(self, error: OneplanError) -> bytes:
        body = openai_error_body(error)
        return b"data: " + orjson.dumps(body) + b"\n\n"

