"""Canonical deltas -> Anthropic Messages SSE, as an incremental state machine.

The event grammar a client relies on::

    message_start
    ( content_block_start  content_block_delta*  content_block_stop )*   indices 0, 1, 2, ...
    message_delta            stop_reason, stop_sequence, cumulative usage
    message_stop

One block is open at a time. A delta of another kind (reasoning, text, a tool call with a new
canonical index) closes the open block and starts the next, so an upstream that interleaves
kinds yields more, smaller blocks rather than reordered text. A thinking block always gets a
``signature_delta`` before it stops: the upstream's signature when it sent one in time,
otherwise a stable placeholder, because clients send thinking blocks back with it. Reasoning
that follows a signature opens a new thinking block: a signature covers what came before it.

``message_delta`` waits for ``finish()``: Chat-dialect upstreams send usage in a chunk *after*
the one carrying the finish reason.

A tool call fragment that arrives after its block was closed (an upstream interleaving two
calls' arguments) is still sent, on the call's own index: the SDKs fold deltas by index, and
dropping it would hand the client a truncated call.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

from oneplan.errors import OneplanError
from oneplan.protocols.anthropic.render import (
    PLACEHOLDER_SIGNATURE_PREFIX,
    error_body,
    matched_stop_sequence,
    omits_thinking,
    sealed_signature,
    stop_reason,
    tool_use_id,
    wire_usage,
)
from oneplan.protocols.anthropic.tokens import estimate_text_tokens
from oneplan.protocols.base import StreamContext, StreamRenderer
from oneplan.protocols.canonical import Delta, ToolCallDelta, ToolCallFolder, Usage

_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_THINKING, _TEXT, _TOOL = 1, 2, 3


def frame(event: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: ``event: X`` then the JSON data line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}


@lru_cache(maxsize=512)
def _delta_prefix(index: int, kind: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":'
        % (index, kind.encode(), _DELTA_FIELDS[kind].encode())
    )


def _block_delta(index: int, kind: str, value: str) -> bytes:
    """The per-chunk hot path: only the value is JSON-encoded, the rest is a cached prefix."""
    return _delta_prefix(index, kind) + orjson.dumps(value) + b"}}\n\n"


class AnthropicStreamRenderer(StreamRenderer):
    __slots__ = (
        "_calls",
        "_ctx",
        "_done",
        "_estimate",
        "_finish",
        "_hash",
        "_next_index",
        "_omit",
        "_omitted",
        "_open",
        "_open_index",
        "_signed",
        "_started",
        "_stops",
        "_tail",
        "_tail_len",
        "_tool_blocks",
        "_usage",
    )

    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        self._started = False
        self._done = False
        self._next_index = 0
        self._open = 0  # kind of the open block, 0 when none
        self._open_index = -1
        self._calls = ToolCallFolder()  # a call's block opens once its name is known
        self._tool_blocks: dict[int, int] = {}  # canonical tool index -> block index
        self._hash: Any = None  # sha256 of the open thinking block, for a placeholder
        self._signed = False
        self._omit = omits_thinking(ctx)  # thinking blocks without their text
        self._omitted: list[str] = []  # the open block's text, for its sealed signature
        self._estimate = 0  # output tokens, estimated, for when the upstream reports none
        self._usage: Usage | None = None
        self._finish: str | None = None
        request = ctx.request
        self._stops = request.stop if request is not None and request.stop else None
        self._tail = ""
        self._tail_len = max(map(len, self._stops)) if self._stops else 0

    # -- the StreamRenderer interface -------------------------------------------------------

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._ctx.response_id,
            "type": "message",
            "role": "assistant",
            "model": self._ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._ctx.input_tokens_estimate,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return frame("message_start", {"type": "message_start", "message": message})

    def feed(self, delta: Delta) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = [] if self._started else [self.start()]
        if delta.reasoning:
            if self._open != _THINKING or self._signed:  # a signature seals its block
                self._open_block(out, _THINKING, {"type": "thinking", "thinking": "", "signature": ""})
                self._hash = hashlib.sha256()
            self._hash.update(delta.reasoning.encode("utf-8", "surrogatepass"))
            self._estimate += estimate_text_tokens(delta.reasoning)
            if self._omit:
                self._omitted.append(delta.reasoning)
            else:
                out.append(_block_delta(self._open_index, "thinking_delta", delta.reasoning))
        if delta.reasoning_signature and self._open == _THINKING:
            self._signed = True
            out.append(_block_delta(self._open_index, "signature_delta", delta.reasoning_signature))
        if delta.text:
            if self._open != _TEXT:
                self._open_block(out, _TEXT, {"type": "text", "text": ""})
            self._estimate += estimate_text_tokens(delta.text)
            if self._tail_len:
                self._tail = (self._tail + delta.text)[-self._tail_len :]
            out.append(_block_delta(self._open_index, "text_delta", delta.text))
        if delta.tool_calls:
            for call in delta.tool_calls:
                self._tool(out, call)
        if delta.finish_reason:
            self._finish = delta.finish_reason
        if delta.usage is not None:
            self._usage = delta.usage
        return b"".join(out)

    def finish(self) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = [] if self._started else [self.start()]
        # Calls that never got a name: keep their arguments.
        for slot in sorted(self._calls.unnamed(), key=lambda slot: slot.index):
            self._start_tool(out, slot.index, slot.id, "", slot.arguments)
        self._close(out)
        self._done = True
        sequence = None
        if self._finish in (None, "stop"):
            sequence = matched_stop_sequence(self._tail, self._stops)
        usage: dict[str, Any]
        if self._usage is not None:
            usage = wire_usage(self._usage)
        else:
            usage = {"output_tokens": self._estimate}
        reason = stop_reason(self._finish, has_tool_calls=bool(self._tool_blocks), stop_sequence=sequence)
        out.append(
            frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": usage,
                },
            )
        )
        out.append(_MESSAGE_STOP)
        return b"".join(out)

    def fail(self, error: OneplanError) -> bytes:
        """Anthropic ends a failing stream with one ``error`` event: no block stops, no
        ``message_stop`` (its absence is how clients know the answer is incomplete)."""
        if self._done:
            return b""
        self._done = True
        return frame("error", error_body(error))

    def ping(self) -> bytes:
        return _PING

    # -- blocks -----------------------------------------------------------------------------

    def _open_block(self, out: list[bytes], kind: int, block: dict[str, Any]) -> None:
        self._close(out)
        self._open = kind
        self._open_index = self._next_index
        self._next_index += 1
        out.append(
            frame(
                "content_block_start",
                {"type": "content_block_start", "index": self._open_index, "content_block": block},
            )
        )

    def _close(self, out: list[bytes]) -> None:
        if not self._open:
            return
        if self._open == _THINKING:
            if not self._signed:
                if self._omit:
                    signature = sealed_signature("".join(self._omitted))
                else:
                    signature = PLACEHOLDER_SIGNATURE_PREFIX + self._hash.hexdigest()[:40]
                out.append(_block_delta(self._open_index, "signature_delta", signature))
            self._omitted = []
            self._signed = False
            self._hash = None
        out.append(frame("content_block_stop", {"type": "content_block_stop", "index": self._open_index}))
        self._open = 0

    def _tool(self, out: list[bytes], call: ToolCallDelta) -> None:
        slot, announced = self._calls.add(call)
        if announced:
            self._start_tool(out, slot.index, slot.id, slot.name or "", slot.arguments)
        elif slot.announced and call.arguments:
            self._estimate += estimate_text_tokens(call.arguments)
            out.append(_block_delta(self._tool_blocks[slot.index], "input_json_delta", call.arguments))

    def _start_tool(
        self, out: list[bytes], index: int, call_id: str | None, name: str, arguments: str
    ) -> None:
        block = {
            "type": "tool_use",
            "id": tool_use_id(call_id, self._ctx.response_id, index),
            "name": name,
            "input": {},
        }
        self._open_block(out, _TOOL, block)
        self._tool_blocks[index] = self._open_index
        if arguments:
            self._estimate += estimate_text_tokens(arguments)
            out.append(_block_delta(self._open_index, "input_json_delta", arguments))
