"""Splits a Qwen model's raw output text into reasoning, answer text and tool calls, incrementally.

The raw text is what the tokenizer decodes, special tags included: ``<think>...</think>`` holds the
reasoning (the prompt itself may have opened the block, as Qwen3.5's template does), and each
``<tool_call>...</tool_call>`` holds one call in the checkpoint's format. Text arrives in arbitrary
chunks; a tail that could be the start of a tag is held back until it is known, so the deltas
never leak half a tag and their concatenation is the same however the text was split.

Layout whitespace (the line breaks around ``<think>`` blocks and between tool calls) is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from oneplan.local.toolcalls import JsonCallParser, XmlCallParser, tool_schemas
from oneplan.protocols.canonical import Delta, Tool, ToolCallDelta
from oneplan.protocols.tags import TagSplitter

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class OutputParser:
    """Feed decoded text with ``feed``; call ``finish`` once at the end. Each returns a Delta."""

    def __init__(
        self,
        *,
        style: str = "json",
        tools: Sequence[Tool] | None = None,
        in_reasoning: bool = False,
        keep_reasoning: bool = True,
        parse_tools: bool = True,
        call_id: Callable[[], str] = new_call_id,
    ) -> None:
        self._style = style
        self._schemas = tool_schemas(tools)
        self._keep_reasoning = keep_reasoning
        self._parse_tools = parse_tools
        self._call_id = call_id
        self._mode = "reasoning" if in_reasoning else "text"
        self._split = TagSplitter()
        self._think_allowed = not in_reasoning  # a <think> only opens before any answer
        self._lead = True  # strip leading layout whitespace of the current section
        self._tail = ""  # held trailing whitespace of the current section
        self._call: JsonCallParser | XmlCallParser | None = None
        self._call_raw = ""
        self.calls = 0
        self._out: Delta = Delta()

    @property
    def in_reasoning(self) -> bool:
        return self._mode == "reasoning"

    # -- output collection -------------------------------------------------------------------

    def _emit(self, field: str, text: str, *, closing: bool) -> None:
        if self._lead:
            text = text.lstrip()
            if text:
                self._lead = False
        text = self._tail + text
        body = text.rstrip()
        self._tail = "" if closing else text[len(body) :]
        if not body:
            return
        if field == "reasoning" and not self._keep_reasoning:
            return
        setattr(self._out, field, (getattr(self._out, field) or "") + body)

    def _calls_out(self, deltas: list[ToolCallDelta]) -> None:
        if deltas:
            self._out.tool_calls = (self._out.tool_calls or []) + deltas

    def _take(self) -> Delta | None:
        out, self._out = self._out, Delta()
        if out.text is None and out.reasoning is None and not out.tool_calls:
            return None
        return out

    def _section(self, mode: str) -> None:
        self._mode = mode
        self._lead = True
        self._tail = ""

    # -- the state machine --------------------------------------------------------------------

    def feed(self, text: str) -> Delta | None:
        self._split.feed(text)
        self._run(final=False)
        return self._take()

    def finish(self) -> Delta | None:
        self._run(final=True)
        if self._mode == "call":
            self._close_call(complete=False)
        elif self._mode == "text" and self._tail and not self.calls:
            self._out.text = (self._out.text or "") + self._tail
            self._tail = ""
        return self._take()

    def _run(self, *, final: bool) -> None:
        while True:
            if self._mode == "reasoning":
                if not self._scan((THINK_CLOSE,), "reasoning", final):
                    return
                self._section("text")
            elif self._mode == "text":
                tags: tuple[str, ...] = (CALL_OPEN,) if self._parse_tools else ()
                tags += (THINK_OPEN,) if self._think_allowed else ()
                found = self._scan(tags, "text", final)
                if not found:
                    return
                self._think_allowed = False
                if found == THINK_OPEN:
                    self._section("reasoning")
                else:
                    self._open_call()
            else:
                body, closed = self._split.next((CALL_CLOSE,), final=final)
                self._feed_call(body)
                if closed is None:
                    return
                self._close_call(complete=True)

    def _scan(self, tags: tuple[str, ...], field: str, final: bool) -> str | None:
        """Emit text up to the first of ``tags`` and return it, or emit what is safe and return None."""
        if THINK_OPEN in tags and self._split.ahead(THINK_OPEN).strip():
            self._think_allowed = False  # the answer has begun: <think> is plain text now
            tags = tuple(t for t in tags if t != THINK_OPEN)
        before, tag = self._split.next(tags, final=final)
        if tag is None:
            self._emit(field, before, closing=False)
        elif before or field == "reasoning":
            self._emit(field, before, closing=True)
        else:
            self._tail = ""
        return tag

    def _open_call(self) -> None:
        index, call_id = self.calls, self._call_id()
        if self._style == "xml":
            self._call = XmlCallParser(index, call_id, self._schemas)
        else:
            self._call = JsonCallParser(index, call_id)
        self._call_raw = ""
        self._mode = "call"

    def _feed_call(self, text: str) -> None:
        if text and self._call is not None:
            self._call_raw += text
            self._calls_out(self._call.feed(text))

    def _close_call(self, *, complete: bool) -> None:
        assert self._call is not None
        deltas = self._call.close()
        if deltas is None:  # not a tool call after all: give the text back
            closing = CALL_CLOSE if complete else ""
            self._section("text")
            self._lead = False
            self._emit("text", CALL_OPEN + self._call_raw + closing, closing=False)
        else:
            self._calls_out(deltas)
            self.calls += 1
            self._section("text")
        self._call = None
