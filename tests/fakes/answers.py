"""What a fake upstream answers: the scripted ``Answer`` and the ``Plan`` made of it for one request.

An ``Answer`` is dialect-neutral (text, reasoning, tool calls, usage, finish); each dialect renders
the ``Plan`` in its own wire shape. Token counts are deterministic so ledger tests can be exact.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)
_PIECE = re.compile(r"\s*\S+\s*|\s+")

DEFAULT_TEXT = "Hello from the fake upstream."
DEFAULT_REASONING = "The user greets me; a short friendly answer will do."


@dataclass(slots=True)
class Tokens:
    """Token totals, as a fake reported them in usage, in oneplan's classes: ``input_tokens``
    is the whole prompt, cache reads (``cached_tokens``) and writes (``cache_write_tokens``, of
    which ``cache_write_1h_tokens`` with a one-hour lifetime) included. Each dialect renders
    them in its own convention."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached(self) -> int:
        return self.input_tokens - self.cached_tokens - self.cache_write_tokens

    def add(self, other: Tokens) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_write_1h_tokens += other.cache_write_1h_tokens


@dataclass(slots=True)
class ToolCallSpec:
    name: str
    arguments: str  # JSON text
    id: str | None = None


@dataclass(slots=True)
class Answer:
    """One scripted answer. ``reasoning`` is only sent when the request has thinking on.

    ``usage=(input, output)`` fixes the reported counts (``input`` the whole prompt, with
    ``cached`` reads and ``cache_write`` writes, ``cache_write_1h`` of them one-hour ones, inside
    it); otherwise they are derived from the request and the answer, the cache classes from the
    fake's own prompt cache where its dialect has one. ``finish`` is the dialect's own finish
    value (e.g. ``"length"``, Zhipu's ``"sensitive"``); by default it follows from whether there
    are tool calls.
    """

    text: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    cached: int = 0
    finish: str | None = None
    cache_write: int = 0
    cache_write_1h: int = 0

    @classmethod
    def make(
        cls,
        text: str | None = None,
        reasoning: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        usage: tuple[int, int] | None = None,
        cached: int = 0,
        finish: str | None = None,
        cache_write: int = 0,
        cache_write_1h: int = 0,
    ) -> Answer:
        calls = []
        for call in tool_calls or ():
            args = call.get("arguments", {})
            calls.append(
                ToolCallSpec(
                    name=call["name"],
                    arguments=args if isinstance(args, str) else json.dumps(args),
                    id=call.get("id"),
                )
            )
        return cls(text, reasoning, calls, usage, cached, finish, cache_write, cache_write_1h)

    @classmethod
    def default(cls) -> Answer:
        return cls(text=DEFAULT_TEXT, reasoning=DEFAULT_REASONING)


@dataclass(slots=True)
class Plan:
    """An answer resolved against one request: what to send, in pieces, and what to bill."""

    model: str
    text_pieces: list[str]
    reasoning_pieces: list[str]
    tool_calls: list[ToolCallSpec]
    arg_pieces: list[list[str]]
    tokens: Tokens
    finish: str | None
    uid: int

    @property
    def text(self) -> str:
        return "".join(self.text_pieces)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_pieces)

    @property
    def reasoning_tokens(self) -> int:
        return len(self.reasoning_pieces)


def pieces(text: str | None) -> list[str]:
    """Split text the way a model streams it: a word (with its spaces) per piece."""
    return _PIECE.findall(text) if text else []


def split_args(arguments: str, parts: int = 3) -> list[str]:
    """Tool-call arguments cut into ``parts`` pieces, cut anywhere, as providers do."""
    if len(arguments) < parts:
        return [arguments] if arguments else []
    step = -(-len(arguments) // parts)
    return [arguments[i : i + step] for i in range(0, len(arguments), step)]


def estimate_input(body: Any) -> int:
    """A deterministic prompt size: one token per four bytes of the messages, at least one."""
    if not isinstance(body, dict):
        return 1
    payload = {k: body.get(k) for k in ("system", "messages", "input", "instructions", "tools")}
    return max(1, len(json.dumps(payload, ensure_ascii=False)) // 4)


def plan(
    answer: Answer,
    body: dict[str, Any],
    *,
    thinking: bool,
    budget: int | None = None,
    cache: tuple[int, int, int] | None = None,
) -> Plan:
    """``cache``: ``(read, write, write_1h)`` as the fake's prompt cache found this request
    (used unless the answer fixes its usage)."""
    reasoning = pieces(answer.reasoning) if thinking else []
    if budget is not None:
        reasoning = reasoning[: max(0, budget)]
    text = pieces(answer.text)
    args = [split_args(call.arguments) for call in answer.tool_calls]
    if answer.usage is not None:
        tokens = Tokens(answer.usage[0], answer.usage[1], answer.cached, answer.cache_write, answer.cache_write_1h)
    else:
        out = len(text) + len(reasoning) + sum(len(a) for a in args)
        read, write, write_1h = cache or (answer.cached, answer.cache_write, answer.cache_write_1h)
        tokens = Tokens(estimate_input(body), max(1, out), read, write, write_1h)
    return Plan(
        model=str(body.get("model") or "fake-model"),
        text_pieces=text,
        reasoning_pieces=reasoning,
        tool_calls=answer.tool_calls,
        arg_pieces=args,
        tokens=tokens,
        finish=answer.finish,
        uid=next(_ids),
    )
