"""Canonical deltas -> the Responses event stream, incrementally.

Every frame is ``event: <type>\\ndata: <json>\\n\\n`` with a ``sequence_number`` counting from 0.
The shape of a stream::

    response.created, response.in_progress
    per output item, in output_index order of opening:
      response.output_item.added
        reasoning: reasoning_summary_part.added, reasoning_summary_text.delta*,
                   reasoning_summary_text.done, reasoning_summary_part.done
        message:   content_part.added, output_text.delta*, output_text.done, content_part.done
        call:      function_call_arguments.delta*, function_call_arguments.done
                   (custom_tool_call: custom_tool_call_input.delta, .done)
      response.output_item.done
    response.completed | response.incomplete (| response.failed)

Reasoning and message items are closed as soon as another kind of output starts. Function-call
items stay open until the answer moves on to reasoning or text (or ends), so an upstream that
interleaves the argument deltas of parallel calls still lands each delta in its own item. A call
is announced only once its name is known (its arguments wait until then); a free-form (custom)
tool's input is only known once its JSON arguments are whole, so it is sent in one delta at the
end of that call. Nothing else is buffered beyond the running text each ``.done`` event repeats.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from oneplan.errors import OneplanError
from oneplan.protocols.base import StreamContext, StreamRenderer
from oneplan.protocols.canonical import CallSlot, Delta, ToolCallDelta, ToolCallFolder, Usage
from oneplan.protocols.responses.parse import ResponsesEnvelope, encode_reasoning
from oneplan.protocols.responses.render import (
    call_item,
    custom_input,
    default_envelope,
    item_id,
    message_item,
    new_call_id,
    output_text_part,
    reasoning_item,
    response_error,
    response_object,
    status_for,
)

_EMPTY: list[Any] = []


class _Call:
    """An announced call's output item."""

    __slots__ = ("custom", "item_id", "output_index", "slot")

    def __init__(self, slot: CallSlot, output_index: int, item_id: str, custom: bool) -> None:
        self.slot = slot
        self.output_index = output_index
        self.item_id = item_id
        self.custom = custom


class ResponsesStreamRenderer(StreamRenderer):
    """One stream's state machine. ``start`` -> ``feed``* -> ``finish`` | ``fail``."""

    def __init__(self, ctx: StreamContext, envelope: ResponsesEnvelope | None = None) -> None:
        self.ctx = ctx
        self.envelope = envelope or default_envelope(ctx.request)
        self._encrypted = self.envelope.include_encrypted_reasoning
        self._tool_map = self.envelope.tool_map
        self._seq = 0
        self._started = False
        self._closed = False
        self._output: list[dict[str, Any] | None] = []  # by output_index; None while open
        # The open reasoning or message item: its kind, output_index, id and text so far.
        self._kind: str | None = None
        self._index = -1
        self._id = ""
        self._parts: list[str] = []
        self._signature: str | None = None
        self._calls = ToolCallFolder()
        self._open_calls: dict[int, _Call] = {}  # by canonical index, in order of announcement
        self._finish: str | None = None
        self._usage: Usage | None = None

    # ----------------------------------------------------------------- StreamRenderer

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = self._response("in_progress", [])
        return self._frame("response.created", {"response": response}) + self._frame(
            "response.in_progress", {"response": response}
        )

    def feed(self, delta: Delta) -> bytes:
        out = b"" if self._started else self.start()
        if delta.reasoning:
            if self._kind != "reasoning":
                out += self._open_text_item("reasoning")
            self._parts.append(delta.reasoning)
            out += self._frame(
                "response.reasoning_summary_text.delta",
                {
                    "item_id": self._id,
                    "output_index": self._index,
                    "summary_index": 0,
                    "delta": delta.reasoning,
                },
            )
        if delta.reasoning_signature:
            self._sign(delta.reasoning_signature)
        if delta.text:
            if self._kind != "message":
                out += self._open_text_item("message")
            self._parts.append(delta.text)
            out += self._frame(
                "response.output_text.delta",
                {
                    "item_id": self._id,
                    "output_index": self._index,
                    "content_index": 0,
                    "delta": delta.text,
                    "logprobs": _EMPTY,
                },
            )
        if delta.tool_calls:
            if self._kind is not None:
                out += self._close_text_item("completed")
            for tc in delta.tool_calls:
                out += self._feed_call(tc)
        if delta.finish_reason:
            self._finish = delta.finish_reason
        if delta.usage is not None:
            self._usage = delta.usage
        return out

    def finish(self) -> bytes:
        out = b"" if self._started else self.start()
        if self._closed:
            return out
        self._closed = True
        status = status_for(self._finish)
        if self._kind is not None:
            out += self._close_text_item(status)
        out += self._close_calls()
        if not self._output:  # the answer was empty: still one (empty) message
            out += self._open_text_item("message") + self._close_text_item(status)
        response = self._response(status, self._done_items())
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._frame(kind, {"response": response})

    def fail(self, error: OneplanError) -> bytes:
        out = b"" if self._started else self.start()
        self._closed = True
        response = self._response("failed", self._done_items(), error=response_error(error))
        return out + self._frame("response.failed", {"response": response})

    # ----------------------------------------------------------------- items

    def _open_text_item(self, kind: str) -> bytes:
        out = self._close_text_item("completed") if self._kind is not None else b""
        out += self._close_calls()
        self._kind, self._index, self._parts = kind, len(self._output), []
        self._id = item_id(self.ctx.response_id, kind, self._index)
        self._output.append(None)
        if kind == "reasoning":
            item: dict[str, Any] = {
                "id": self._id,
                "type": "reasoning",
                "summary": [],
                "status": "in_progress",
            }
            part_event = "response.reasoning_summary_part.added"
            where: dict[str, Any] = {"summary_index": 0}
            part: dict[str, Any] = {"type": "summary_text", "text": ""}
        else:
            item = message_item(self._id, "", "in_progress")
            part_event = "response.content_part.added"
            where = {"content_index": 0}
            part = output_text_part("")
        out += self._frame("response.output_item.added", {"output_index": self._index, "item": item})
        return out + self._frame(
            part_event,
            {"item_id": self._id, "output_index": self._index, **where, "part": part},
        )

    def _close_text_item(self, status: str) -> bytes:
        text = "".join(self._parts)
        ref = {"item_id": self._id, "output_index": self._index}
        if self._kind == "reasoning":
            item = reasoning_item(self._id, text, self._signature, encrypted=self._encrypted, status=status)
            part = {"type": "summary_text", "text": text}
            out = self._frame(
                "response.reasoning_summary_text.done", {**ref, "summary_index": 0, "text": text}
            ) + self._frame("response.reasoning_summary_part.done", {**ref, "summary_index": 0, "part": part})
            self._signature = None
        else:
            item = message_item(self._id, text, status)
            out = self._frame(
                "response.output_text.done",
                {**ref, "content_index": 0, "text": text, "logprobs": _EMPTY},
            ) + self._frame(
                "response.content_part.done",
                {**ref, "content_index": 0, "part": output_text_part(text)},
            )
        self._output[self._index] = item
        self._kind, self._parts = None, []
        return out + self._frame("response.output_item.done", {"output_index": self._index, "item": item})

    def _sign(self, signature: str) -> None:
        """A thinking signature belongs to the reasoning item it ends; if that item is already
        done, it still reaches the final response (and storage) through the item's blob."""
        if self._kind == "reasoning":
            self._signature = signature
            return
        for item in reversed(self._done_items()):
            if item["type"] == "reasoning":
                text = item["summary"][0]["text"] if item["summary"] else ""
                if self._encrypted:
                    item["encrypted_content"] = encode_reasoning(text, signature)
                return

    def _feed_call(self, fragment: ToolCallDelta) -> bytes:
        slot, announced = self._calls.add(fragment)
        if announced:
            return self._announce(slot)
        call = self._open_calls.get(slot.index)
        if call is not None and fragment.arguments and not call.custom:
            return self._frame(
                "response.function_call_arguments.delta",
                {"item_id": call.item_id, "output_index": call.output_index, "delta": fragment.arguments},
            )
        return b""

    def _announce(self, slot: CallSlot) -> bytes:
        name = slot.name or ""
        custom = name in self._tool_map.custom
        slot.id = slot.id or new_call_id()
        output_index = len(self._output)
        kind = "custom_tool_call" if custom else "function_call"
        call = _Call(slot, output_index, item_id(self.ctx.response_id, kind, output_index), custom)
        self._output.append(None)
        self._open_calls[slot.index] = call
        item = call_item(call.item_id, slot.id, name, "", self._tool_map, "in_progress")
        out = self._frame("response.output_item.added", {"output_index": output_index, "item": item})
        if slot.parts and not custom:  # arguments that came before the name
            out += self._frame(
                "response.function_call_arguments.delta",
                {"item_id": call.item_id, "output_index": output_index, "delta": slot.arguments},
            )
        return out

    def _close_calls(self) -> bytes:
        out = b""
        for slot in self._calls.unnamed():
            out += self._announce(slot)  # a call whose name never came
        for call in self._open_calls.values():
            slot = call.slot
            arguments = slot.arguments
            ref = {"item_id": call.item_id, "output_index": call.output_index}
            if call.custom:
                text = custom_input(arguments)
                out += self._frame(
                    "response.custom_tool_call_input.delta", {**ref, "delta": text}
                ) + self._frame("response.custom_tool_call_input.done", {**ref, "input": text})
            else:
                out += self._frame("response.function_call_arguments.done", {**ref, "arguments": arguments})
            item = call_item(call.item_id, slot.id or "", slot.name or "", arguments, self._tool_map)
            self._output[call.output_index] = item
            out += self._frame("response.output_item.done", {"output_index": call.output_index, "item": item})
        self._open_calls = {}
        # Calls are done; a later delta with the same index starts a new call.
        self._calls.clear()
        return out

    # ----------------------------------------------------------------- frames

    def _done_items(self) -> list[dict[str, Any]]:
        return [item for item in self._output if item is not None]

    def _response(
        self, status: str, output: list[dict[str, Any]], error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return response_object(
            self.ctx,
            self.envelope,
            status=status,
            output=output,
            usage=self._usage if status != "in_progress" else None,
            finish_reason=self._finish,
            error=error,
            completed_at=int(time.time()) if status == "completed" else None,
        )

    def _frame(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self._seq
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
