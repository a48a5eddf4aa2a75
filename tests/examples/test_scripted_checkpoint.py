"""The scripted checkpoint's contract, on the real engine: for any conversation it answers what
``Script.pick`` says, in its own tool-call format, whether thinking is on, off or left alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from examples.one_sentence_order import tools
from examples.one_sentence_order.orders import SENTENCE, happy_path
from examples.one_sentence_order.script import render
from examples.one_sentence_order.scripted import pieces
from tests.examples.conftest import Stack


def conversation(cue: str | None) -> list[dict[str, object]]:
    """The sentence, one tool call, and a shop answer holding ``cue`` (if any)."""
    messages: list[dict[str, object]] = [{"role": "user", "content": SENTENCE}]
    if cue is not None:
        call = {"id": "c1", "type": "function", "function": {"name": "search_menu", "arguments": '{"query": "x"}'}}
        messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "c1", "content": f'{{{cue}: 1}}'}]
    return messages


@pytest.mark.parametrize("model", ["tiny-order-json", "tiny-order-xml"])
@pytest.mark.parametrize("thinking", [None, False, True])
def test_every_turn_answers_as_the_script_says(stack: Stack, model: str, thinking: bool | None) -> None:
    from oneplan.local.engine import EngineOptions, LocalEngine
    from oneplan.protocols.canonical import Accumulator, ChatRequest, Thinking

    engine = LocalEngine.load(EngineOptions(path=str(stack.checkpoints[model])))
    script = happy_path()

    async def answer(messages: list[dict[str, object]]) -> tuple[str, list[tuple[str, object]]]:
        request = ChatRequest(model=model, messages=messages, tools=tools.openai_tools(),
                              thinking=Thinking(enabled=thinking))
        acc = Accumulator()
        async for delta in engine.stream(request):
            acc.add(delta)
        done = acc.result(id="t", model=model, created=0)
        return (done.text or "").strip(), [(c.name, json.loads(c.arguments)) for c in done.tool_calls]

    try:
        for turn in script.turns:
            text, calls = asyncio.run(answer(conversation(turn.cue)))
            assert calls == [(c.name, c.arguments) for c in turn.calls]
            assert text == turn.text
    finally:
        engine.close()


def test_pieces_never_repeat_within_an_answer() -> None:
    for style in ("json", "xml"):
        for turn in happy_path().turns:
            text = render(turn, style)
            parts = pieces(text)
            assert "".join(parts) == text and len(set(parts)) == len(parts)


def test_a_cue_in_an_answer_is_refused(tmp_path: Path) -> None:
    from examples.one_sentence_order.script import Script, Turn

    with pytest.raises(ValueError, match="must come from the shop"):
        Script((Turn.make(None, text='I saw "menu_matches"'), Turn.make('"menu_matches"', text="ok")))
