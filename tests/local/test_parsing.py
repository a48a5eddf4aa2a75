"""The output parsers over scripted text: thinking, both tool-call formats, split anywhere."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from oneplan.local.parsing import OutputParser
from oneplan.local.toolcalls import convert_value
from oneplan.protocols.canonical import Accumulator, ChatResult

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "scale": {"type": "number"},
                "options": {"type": "object"},
                "tags": {"type": "array"},
                "note": {"type": ["string", "null"]},
            },
        },
    },
}

JSON_ANSWER = (
    "<think>\nThe user wants weather.\n</think>\n\nLet me check.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, '
    '"options": {"unit": "C", "hours": [1, 2]}}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Köln"}}\n</tool_call>'
)
XML_ANSWER = (
    "I need the weather.\n</think>\n\n"
    '<tool_call>\n<function=get_weather>\n<parameter=city>\nNew "York"\n</parameter>\n'
    "<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n"
    '<parameter=scale>\n1.5\n</parameter>\n<parameter=options>\n{"unit": "F"}\n</parameter>\n'
    "<parameter=tags>\n['a', 'b']\n</parameter>\n</function>\n</tool_call>\n"
    "<tool_call>\n<function=get_weather>\n</function>\n</tool_call>"
)


def parse(chunks: list[str], **options: Any) -> ChatResult:
    parser = OutputParser(call_id=lambda: "call_x", **options)
    acc = Accumulator()
    for chunk in chunks:
        delta = parser.feed(chunk)
        if delta is not None:
            acc.add(delta)
    end = parser.finish()
    if end is not None:
        acc.add(end)
    return acc.result(id="r", model="m", created=0)


def summary(result: ChatResult) -> tuple[Any, ...]:
    return (result.text, result.reasoning, [(c.name, c.arguments) for c in result.tool_calls])


def test_json_tool_calls_and_thinking() -> None:
    result = parse([JSON_ANSWER], style="json", tools=[WEATHER])
    assert result.reasoning == "The user wants weather."
    assert result.text == "Let me check."
    assert [c.name for c in result.tool_calls] == ["get_weather", "get_weather"]
    first = json.loads(result.tool_calls[0].arguments)
    assert first == {"city": "Paris", "days": 3, "options": {"unit": "C", "hours": [1, 2]}}
    assert json.loads(result.tool_calls[1].arguments) == {"city": "Köln"}


def test_xml_tool_call_arguments_follow_the_schema() -> None:
    result = parse([XML_ANSWER], style="xml", tools=[WEATHER], in_reasoning=True)
    assert result.reasoning == "I need the weather."
    assert result.text is None
    args = json.loads(result.tool_calls[0].arguments)
    assert args == {
        "city": 'New "York"',
        "days": 3,
        "metric": True,
        "scale": 1.5,
        "options": {"unit": "F"},
        "tags": ["a", "b"],
    }
    assert json.loads(result.tool_calls[1].arguments) == {}


def test_every_chunk_boundary_gives_the_same_answer() -> None:
    for text, options in (
        (JSON_ANSWER, {"style": "json"}),
        (XML_ANSWER, {"style": "xml", "in_reasoning": True}),
    ):
        whole = summary(parse([text], tools=[WEATHER], **options))
        for cut in range(1, len(text)):
            assert summary(parse([text[:cut], text[cut:]], tools=[WEATHER], **options)) == whole, cut
        assert summary(parse(list(text), tools=[WEATHER], **options)) == whole


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_splits_agree(data: st.DataObject) -> None:
    text, options = data.draw(
        st.sampled_from(
            [(JSON_ANSWER, {"style": "json"}), (XML_ANSWER, {"style": "xml", "in_reasoning": True})]
        )
    )
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=30)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert summary(parse(chunks, tools=[WEATHER], **options)) == summary(
        parse([text], tools=[WEATHER], **options)
    )


_safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>"), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(
    reasoning=_safe_text.filter(lambda s: s.strip() != ""),
    answer=_safe_text,
    city=_safe_text,
    days=st.integers(-(10**6), 10**6),
    cut=st.integers(1, 200),
    style=st.sampled_from(["json", "xml"]),
)
def test_generated_answers_round_trip(
    reasoning: str, answer: str, city: str, days: int, cut: int, style: str
) -> None:
    """Whatever the model says, in either format, comes back intact however it is chunked."""
    if style == "json":
        call = json.dumps({"name": "get_weather", "arguments": {"city": city, "days": days}})
    else:
        call = (
            f"<function=get_weather>\n<parameter=city>\n{city}\n</parameter>\n"
            f"<parameter=days>\n{days}\n</parameter>\n</function>"
        )
    text = f"<think>\n{reasoning}\n</think>\n\n{answer}\n<tool_call>\n{call}\n</tool_call>"
    chunks = [text[i : i + cut] for i in range(0, len(text), cut)]
    result = parse(chunks, style=style, tools=[WEATHER])
    assert result.reasoning == reasoning.strip()
    assert (result.text or "") == answer.strip()
    assert len(result.tool_calls) == 1
    assert json.loads(result.tool_calls[0].arguments) == {"city": city, "days": days}


def test_a_partial_tag_is_held_back_until_known() -> None:
    parser = OutputParser(style="json", tools=[WEATHER])
    first = parser.feed("Hello <tool_")
    assert first is not None and first.text == "Hello"
    assert parser.feed('call>\n{"name": "get_weather", ') is None
    named = parser.feed('"arguments": {"city"')
    assert named is not None and named.tool_calls is not None
    assert named.tool_calls[0].name == "get_weather"
    assert "".join(c.arguments for c in named.tool_calls) == '{"city"'  # streamed as they form
    later = parser.feed(': "Rome"}')
    assert later is not None and later.tool_calls is not None
    assert later.tool_calls[0].arguments == ': "Rome"'  # the closing brace may be the outer one


def test_xml_string_values_stream_character_by_character() -> None:
    parser = OutputParser(style="xml", tools=[WEATHER])
    parser.feed("<tool_call>\n<function=get_weather>\n<parameter=city>\nSan")
    delta = parser.feed(" Francisco")
    assert delta is not None and delta.tool_calls is not None
    assert delta.tool_calls[0].arguments == " Francisco"


def test_thinking_off_drops_reasoning() -> None:
    result = parse(["<think>\nsecret\n</think>\n\nHi!"], keep_reasoning=False)
    assert result.reasoning is None and result.text == "Hi!"


def test_a_think_tag_after_the_answer_began_is_text() -> None:
    assert parse(["Use a <think> tag."]).text == "Use a <think> tag."


def test_malformed_tool_call_comes_back_as_text() -> None:
    result = parse(["<tool_call>not json</tool_call>"], style="json", tools=[WEATHER])
    assert result.tool_calls == [] and result.text == "<tool_call>not json</tool_call>"


def test_without_tools_tags_are_text() -> None:
    text = '<tool_call>\n{"name": "x", "arguments": {}}\n</tool_call>'
    assert parse([text], parse_tools=False).text == text


def test_an_unfinished_call_is_closed_at_the_end() -> None:
    result = parse(
        ["<tool_call>\n<function=get_weather>\n<parameter=city>\nOs"], style="xml", tools=[WEATHER]
    )
    assert json.loads(result.tool_calls[0].arguments) == {"city": "Os"}


def test_convert_value_falls_back_to_text() -> None:
    assert convert_value("12", {"type": "integer"}) == 12
    assert convert_value("twelve", {"type": "integer"}) == "twelve"
    assert convert_value("null", {"type": ["integer", "null"]}) is None
    assert convert_value("2.0", {"type": "number"}) == 2.0
    assert convert_value("42", {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}) == 42
    assert convert_value("x", None) == "x"
