"""A scripted model's turns: which answer to give, given the conversation so far.

A script is a list of ``Turn``s. Each turn but the first names a *cue*: a short text that appears
in the conversation only once the shop has answered a certain way (``"menu_matches"`` after a menu
search, ``"sold_out"`` after an order for an item that has run out). The answer to a request is
the turn whose cue appears in the conversation with the highest index in the list, or the first
turn when none does. The scripted checkpoint (``scripted.py``) computes exactly this rule in its
weights; the fake upstreams in the tests apply it to the request body (``pick``), so every backend
answers the same conversation with the same tool calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    cue: str | None  # None: the first turn (nothing the shop said yet)
    calls: tuple[Call, ...] = ()
    text: str = ""  # said before the calls, or the whole answer when there are none

    @classmethod
    def make(cls, cue: str | None, *calls: tuple[str, dict[str, Any]], text: str = "") -> Turn:
        return cls(cue, tuple(Call(name, args) for name, args in calls), text)


@dataclass(frozen=True, slots=True)
class Script:
    turns: tuple[Turn, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.turns or self.turns[0].cue is not None:
            raise ValueError("a script starts with a turn without a cue")
        cues = [t.cue for t in self.turns[1:]]
        if None in cues or len(set(cues)) != len(cues):
            raise ValueError("every later turn needs its own cue")
        for turn in self.turns:
            said = turn.text + json.dumps([c.arguments for c in turn.calls])
            for cue in cues:
                if cue and cue in said:
                    raise ValueError(f"the cue {cue!r} appears in an answer; it must come from the shop")

    def pick(self, conversation: str) -> Turn:
        """The turn that answers a conversation (all its text, joined)."""
        chosen = self.turns[0]
        for turn in self.turns[1:]:
            if turn.cue and turn.cue in conversation:
                chosen = turn
        return chosen


def render(turn: Turn, style: str) -> str:
    """The turn as a Qwen model writes it: JSON inside ``<tool_call>`` or the XML format."""
    calls = [_json_call(c) if style == "json" else _xml_call(c) for c in turn.calls]
    head = [turn.text] if turn.text else []
    return "\n".join(head + calls)


def _json_call(call: Call) -> str:
    return "<tool_call>\n" + json.dumps({"name": call.name, "arguments": call.arguments}) + "\n</tool_call>"


def _xml_call(call: Call) -> str:
    params = "".join(
        f"<parameter={key}>\n{value if isinstance(value, str) else json.dumps(value)}\n</parameter>\n"
        for key, value in call.arguments.items()
    )
    return f"<tool_call>\n<function={call.name}>\n{params}</function>\n</tool_call>"


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (message texts, tool results, in any protocol's shape)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def answer_for(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    """What a fake upstream answers to ``body``: ``FakeUpstream.reply`` keyword arguments."""
    turn = script.pick("\n".join(strings(body.get("messages") or [])))
    calls = [{"name": c.name, "arguments": c.arguments} for c in turn.calls]
    return {"text": turn.text or None, "tool_calls": calls or None}
