"""Anthropic Messages streaming: canonical deltas -> SSE, and Anthropic SSE -> canonical."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2 as httpx  # the SDK's own HTTP client package
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneplan import errors
from oneplan.protocols.anthropic import (
    PROTOCOL,
    UpstreamStreamParser,
    UsageMeter,
    placeholder_signature,
)
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import Accumulator, ChatRequest, Delta, ToolCallDelta, Usage

Event = tuple[str, dict[str, Any]]


def ctx(**fields: Any) -> StreamContext:
    fields.setdefault("input_tokens_estimate", 42)
    return StreamContext(response_id="msg_s1", model="claude-sonnet-4-5", created=0, **fields)


def parse_sse(raw: bytes) -> list[Event]:
    """Split SSE bytes into (event, data); every frame must name its event and match it."""
    events: list[Event] = []
    for chunk in raw.split(b"\n\n"):
        if not chunk:
            continue
        lines = chunk.split(b"\n")
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), chunk
        name = lines[0][7:].decode()
        data = orjson.loads(lines[1][6:])
        assert data["type"] == name
        events.append((name, data))
    assert raw.endswith(b"\n\n") or not raw
    return events


def run(deltas: list[Delta], context: StreamContext | None = None) -> bytes:
    renderer = PROTOCOL.renderer(context or ctx())
    return renderer.start() + b"".join(renderer.feed(d) for d in deltas) + renderer.finish()


def sdk_final_message(raw: bytes) -> anthropic.types.Message:
    """Read our SSE with the official SDK client, as a real application would."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://oneplan.test",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def check_grammar(events: list[Event]) -> dict[int, str]:
    """The invariants every Anthropic client relies on; returns block index -> block type."""
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "message_start" not in names[1:] and names.count("message_delta") == 1
    blocks: dict[int, str] = {}
    open_index: int | None = None
    last_delta_kind: dict[int, str] = {}
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_index is None, "one block open at a time"
            assert data["index"] == len(blocks), "indices increase from 0 with no gaps"
            blocks[data["index"]] = data["content_block"]["type"]
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
            kind, delta = blocks[data["index"]], data["delta"]["type"]
            allowed = {
                "thinking": {"thinking_delta", "signature_delta"},
                "text": {"text_delta"},
                "tool_use": {"input_json_delta"},
            }[kind]
            assert delta in allowed, (kind, delta)
            last_delta_kind[data["index"]] = delta
        elif name == "content_block_stop":
            assert data["index"] == open_index
            if blocks[open_index] == "thinking":
                assert last_delta_kind.get(open_index) == "signature_delta", "signed before stop"
            open_index = None
        else:
            pytest.fail(f"unexpected event {name}")
    assert open_index is None, "every block is stopped before message_delta"
    start_usage = events[0][1]["message"]["usage"]["output_tokens"]
    assert events[-2][1]["usage"]["output_tokens"] >= start_usage
    return blocks


def collect(events: list[Event], blocks: dict[int, str]) -> dict[str, Any]:
    text, thinking, tools = [], [], {}
    for name, data in events:
        if name == "content_block_start" and data["content_block"]["type"] == "tool_use":
            tools[data["index"]] = [data["content_block"]["id"], data["content_block"]["name"], ""]
        if name != "content_block_delta":
            continue
        delta = data["delta"]
        if delta["type"] == "text_delta":
            text.append(delta["text"])
        elif delta["type"] == "thinking_delta":
            thinking.append(delta["thinking"])
        elif delta["type"] == "input_json_delta":
            tools[data["index"]][2] += delta["partial_json"]
    return {"text": "".join(text), "thinking": "".join(thinking), "tools": [tools[i] for i in sorted(tools)]}


# -- fixed cases -------------------------------------------------------------------------------


def test_text_stream_event_sequence() -> None:
    raw = run([Delta(text="Hel"), Delta(text="lo"), Delta(finish_reason="stop")])
    events = parse_sse(raw)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["role"], start["content"]) == (
        "msg_s1",
        "claude-sonnet-4-5",
        "assistant",
        [],
    )
    assert start["usage"]["input_tokens"] == 42  # the estimate, announced up front
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    message = sdk_final_message(raw)
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert message.stop_reason == "end_turn"


def test_usage_after_finish_lands_in_message_delta_excluding_cache() -> None:
    usage = Usage(input_tokens=500, output_tokens=7, cached_tokens=400, cache_write_tokens=50)
    raw = run([Delta(text="x"), Delta(finish_reason="length"), Delta(usage=usage)])
    events = parse_sse(raw)
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"] == {
        "input_tokens": 50,
        "output_tokens": 7,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 50,
    }
    message = sdk_final_message(raw)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (50, 7)
    assert message.usage.cache_read_input_tokens == 400


def test_missing_usage_is_estimated_from_the_output() -> None:
    events = parse_sse(run([Delta(text="a" * 40)]))
    assert events[-2][1]["usage"] == {"output_tokens": 10}


def test_thinking_then_text_with_upstream_signature() -> None:
    raw = run(
        [
            Delta(reasoning="Let me "),
            Delta(reasoning="think."),
            Delta(reasoning_signature="EqQB-real"),
            Delta(text="Answer."),
            Delta(finish_reason="stop"),
        ]
    )
    events = parse_sse(raw)
    blocks = check_grammar(events)
    assert blocks == {0: "thinking", 1: "text"}
    signatures = [
        d["delta"]["signature"] for n, d in events if d.get("delta", {}).get("type") == "signature_delta"
    ]
    assert signatures == ["EqQB-real"]
    message = sdk_final_message(raw)
    assert message.content[0].type == "thinking"
    assert (message.content[0].thinking, message.content[0].signature) == ("Let me think.", "EqQB-real")


def test_unsigned_thinking_gets_the_same_placeholder_as_a_whole_answer() -> None:
    events = parse_sse(run([Delta(reasoning="hm"), Delta(reasoning="m"), Delta(text="ok")]))
    check_grammar(events)
    sig = [d["delta"]["signature"] for n, d in events if d.get("delta", {}).get("type") == "signature_delta"]
    assert sig == [placeholder_signature("hmm")]


def test_parallel_tool_calls_each_get_a_block() -> None:
    raw = run(
        [
            Delta(text="Checking both."),
            Delta(tool_calls=[ToolCallDelta(index=0, id="call_a", name="weather", arguments="")]),
            Delta(tool_calls=[ToolCallDelta(index=0, arguments='{"city":')]),
            Delta(tool_calls=[ToolCallDelta(index=0, arguments='"Paris"}')]),
            Delta(
                tool_calls=[ToolCallDelta(index=1, id="call_b", name="weather", arguments='{"city":"Rome"}')]
            ),
            Delta(finish_reason="tool_calls"),
        ]
    )
    events = parse_sse(raw)
    assert check_grammar(events) == {0: "text", 1: "tool_use", 2: "tool_use"}
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts[1] == {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}
    message = sdk_final_message(raw)
    assert message.stop_reason == "tool_use"
    assert [b.input for b in message.content if b.type == "tool_use"] == [{"city": "Paris"}, {"city": "Rome"}]


def test_tool_name_arriving_late_is_waited_for() -> None:
    raw = run(
        [
            Delta(tool_calls=[ToolCallDelta(index=0, id="c1", arguments='{"a"')]),
            Delta(tool_calls=[ToolCallDelta(index=0, name="f", arguments=":1}")]),
            Delta(tool_calls=[ToolCallDelta(index=1, arguments="{}")]),  # never named
        ]
    )
    events = parse_sse(raw)
    check_grammar(events)
    collected = collect(events, {})
    assert collected["tools"] == [["c1", "f", '{"a":1}'], ["toolu_s1_1", "", "{}"]]


def test_late_fragment_for_a_closed_tool_is_not_lost() -> None:
    raw = run(
        [
            Delta(tool_calls=[ToolCallDelta(index=0, id="a", name="f", arguments='{"x":')]),
            Delta(tool_calls=[ToolCallDelta(index=1, id="b", name="g", arguments="{}")]),
            Delta(tool_calls=[ToolCallDelta(index=0, arguments="1}")]),
        ]
    )
    message = sdk_final_message(raw)
    assert [b.input for b in message.content if b.type == "tool_use"] == [{"x": 1}, {}]


def test_stop_sequence_detected_in_stream() -> None:
    request = ChatRequest(model="m", messages=[], stop=["STOP"])
    events = parse_sse(
        run([Delta(text="go ST"), Delta(text="OP"), Delta(finish_reason="stop")], ctx(request=request))
    )
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}


def test_fail_sends_only_an_error_event_and_ends_the_stream() -> None:
    renderer = PROTOCOL.renderer(ctx())
    raw = renderer.start() + renderer.feed(Delta(text="partial"))
    tail = renderer.fail(errors.UpstreamUnavailable("provider overloaded"))
    assert parse_sse(tail) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "provider overloaded"}})
    ]
    assert renderer.finish() == b"" and renderer.feed(Delta(text="more")) == b""
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_final_message(raw + tail)
    assert "overloaded" in str(caught.value)


def test_ping_is_an_anthropic_ping_event() -> None:
    assert parse_sse(PROTOCOL.renderer(ctx()).ping()) == [("ping", {"type": "ping"})]


def test_feed_without_start_still_opens_the_message() -> None:
    renderer = PROTOCOL.renderer(ctx())
    events = parse_sse(renderer.feed(Delta(text="x")) + renderer.finish())
    check_grammar(events)
    assert renderer.start() == b""


def test_empty_stream_is_still_well_formed() -> None:
    events = parse_sse(run([Delta(finish_reason="stop")]))
    assert check_grammar(events) == {}


# -- the property ------------------------------------------------------------------------------

_text = st.text(min_size=1, max_size=8)
_json_objects = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=6), st.booleans()),
    max_size=3,
)


@st.composite
def upstream_streams(draw: st.DrawFn) -> tuple[list[Delta], dict[str, Any]]:
    """Well-formed canonical streams: runs of reasoning, text and tool calls interleaved in any
    order (a tool call's fragments are contiguous, as every real upstream sends them), empty
    chunks, signatures, a finish reason or none, usage with the finish, after it or missing."""
    deltas: list[Delta] = []
    expected: dict[str, Any] = {"text": "", "thinking": "", "tools": []}
    for kind in draw(st.lists(st.sampled_from(["reasoning", "text", "tool", "empty"]), max_size=8)):
        fragments = draw(st.lists(_text, min_size=1, max_size=4))
        if kind == "reasoning":
            deltas.extend(Delta(reasoning=f) for f in fragments)
            expected["thinking"] += "".join(fragments)
            if draw(st.booleans()):
                deltas.append(Delta(reasoning_signature=draw(_text)))
        elif kind == "text":
            deltas.extend(Delta(text=f) for f in fragments)
            expected["text"] += "".join(fragments)
        elif kind == "tool":
            arguments = orjson.dumps(draw(_json_objects)).decode()
            cuts = sorted(draw(st.sets(st.integers(1, len(arguments) - 1), max_size=3)))
            fragments = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
            index = len(expected["tools"])
            call_id, name = f"call_{index}", draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True))
            split_name = draw(st.booleans())
            first = ToolCallDelta(
                index=index, id=call_id, name=None if split_name else name, arguments=fragments[0]
            )
            deltas.append(Delta(tool_calls=[first]))
            if split_name:
                deltas.append(Delta(tool_calls=[ToolCallDelta(index=index, name=name)]))
            deltas.extend(Delta(tool_calls=[ToolCallDelta(index=index, arguments=f)]) for f in fragments[1:])
            expected["tools"].append([call_id, name, "".join(fragments)])
        else:
            deltas.append(Delta())
    finish = draw(st.sampled_from([None, "stop", "length", "tool_calls", "content_filter"]))
    usage = None
    if draw(st.booleans()):
        cached = draw(st.integers(0, 100))
        usage = Usage(
            input_tokens=cached + draw(st.integers(0, 100)),
            output_tokens=draw(st.integers(0, 500)),
            cached_tokens=cached,
        )
    where = draw(st.sampled_from(["with_finish", "after"]))
    if where == "with_finish":
        deltas.append(Delta(finish_reason=finish, usage=usage))
    else:
        deltas.append(Delta(finish_reason=finish))
        if usage is not None:
            deltas.append(Delta(usage=usage))
    expected["finish"], expected["usage"] = finish, usage
    return deltas, expected


STOP_REASONS = {None: "end_turn", "stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upstream_streams())
def test_any_upstream_stream_becomes_a_well_formed_anthropic_stream(
    case: tuple[list[Delta], dict[str, Any]],
) -> None:
    deltas, expected = case
    events = parse_sse(run(deltas))
    blocks = check_grammar(events)
    got = collect(events, blocks)
    assert got == {"text": expected["text"], "thinking": expected["thinking"], "tools": expected["tools"]}
    final = events[-2][1]
    reason = final["delta"]["stop_reason"]
    if expected["finish"] in ("length", "content_filter"):
        assert reason == STOP_REASONS[expected["finish"]]
    elif expected["tools"] or expected["finish"] == "tool_calls":
        assert reason == "tool_use"
    else:
        assert reason == "end_turn"
    usage = expected["usage"]
    if usage is not None:
        assert final["usage"]["output_tokens"] == usage.output_tokens
        assert final["usage"]["input_tokens"] == usage.input_tokens - usage.cached_tokens
        assert final["usage"]["cache_read_input_tokens"] == usage.cached_tokens
    # The SDK's own accumulator folds it into a valid Message with the same content.
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    message = anthropic.types.Message.model_validate(snapshot.to_dict())
    assert "".join(b.text for b in message.content if b.type == "text") == expected["text"]
    assert [b.name for b in message.content if b.type == "tool_use"] == [t[1] for t in expected["tools"]]


# -- Anthropic upstream streams -> canonical ---------------------------------------------------


def anthropic_events() -> list[dict[str, Any]]:
    """A realistic Anthropic stream: thinking, text, one tool call, cache usage."""
    usage = {
        "input_tokens": 12,
        "output_tokens": 1,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 20,
    }
    return [
        {
            "type": "message_start",
            "message": {
                "id": "msg_up",
                "type": "message",
                "role": "assistant",
                "model": "glm-4.6",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Plan: "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "call f."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig-up"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "ping"},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Calling f"}},
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"q": '},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '"x"}'},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {"type": "tool_use", "id": "toolu_10", "name": "now", "input": {}},
        },
        {"type": "content_block_stop", "index": 3},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 33},
        },
        {"type": "message_stop"},
    ]


def test_upstream_stream_parser_yields_canonical_deltas() -> None:
    parser = UpstreamStreamParser()
    acc = Accumulator()
    for event in anthropic_events():
        for delta in parser.feed(event):
            acc.add(delta)
    res = acc.result(id="r", model="m", created=0)
    assert (res.reasoning, res.reasoning_signature, res.text) == ("Plan: call f.", "sig-up", "Calling f")
    assert [(c.id, c.name, c.arguments) for c in res.tool_calls] == [
        ("toolu_9", "f", '{"q": "x"}'),
        ("toolu_10", "now", "{}"),
    ]
    assert res.finish_reason == "tool_calls"
    assert res.usage == Usage(input_tokens=332, output_tokens=33, cached_tokens=300, cache_write_tokens=20)


def test_anthropic_upstream_relayed_through_canonical_reads_the_same_in_the_sdk() -> None:
    parser = UpstreamStreamParser()
    renderer = PROTOCOL.renderer(ctx())
    raw = renderer.start()
    for event in anthropic_events():
        for delta in parser.feed(event):
            raw += renderer.feed(delta)
    raw += renderer.finish()
    message = sdk_final_message(raw)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].signature == "sig-up"
    assert message.content[2].input == {"q": "x"}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 33)
    assert message.usage.cache_read_input_tokens == 300
    assert message.usage.cache_creation_input_tokens == 20


def test_upstream_error_event_raises_the_mapped_error() -> None:
    parser = UpstreamStreamParser()
    parser.feed(anthropic_events()[0])
    with pytest.raises(errors.UpstreamUnavailable):
        parser.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def test_usage_meter_follows_a_relayed_stream() -> None:
    meter = UsageMeter()
    for event in anthropic_events():
        meter.feed(event)
    assert meter.usage == Usage(input_tokens=332, output_tokens=33, cached_tokens=300, cache_write_tokens=20)
    assert (meter.finish_reason, meter.completed, meter.id) == ("tool_calls", True, "msg_up")


def test_usage_meter_takes_final_input_counts_from_message_delta() -> None:
    meter = UsageMeter()
    meter.feed(anthropic_events()[0])
    meter.feed(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 5, "input_tokens": 15, "cache_read_input_tokens": None},
        }
    )
    assert meter.usage == Usage(input_tokens=335, output_tokens=5, cached_tokens=300, cache_write_tokens=20)
    assert meter.completed is False  # no message_stop: the relay knows the answer was cut


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Anthropic event streams as an upstream sends them, with the content they spell."""
    blocks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {"id": "msg_u", "type": "message", "role": "assistant", "model": "m", "content": []},
        }
    ]
    events[0]["message"]["usage"] = {"input_tokens": draw(st.integers(0, 99)), "output_tokens": 1}

    def pieces(value: str) -> list[str]:
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(value) - 1)), max_size=3)))
        return [p for p in (value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)], strict=True)) if p]

    for index, kind in enumerate(
        draw(st.lists(st.sampled_from(["thinking", "text", "tool_use"]), max_size=6))
    ):
        if kind == "tool_use":
            value = draw(_json_objects)
            block = {"type": "tool_use", "id": f"toolu_{index}", "name": "f", "input": value}
            start = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in pieces(orjson.dumps(value).decode())
            ]
        elif kind == "text":
            block = {"type": "text", "text": draw(_text)}
            start, deltas = (
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": p} for p in pieces(block["text"])],
            )
        else:
            block = {"type": "thinking", "thinking": draw(_text), "signature": f"sig{index}"}
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        blocks.append(block)
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    reason = draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence"]))
    usage = {"output_tokens": draw(st.integers(1, 999)), "cache_read_input_tokens": draw(st.integers(0, 50))}
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage}
    )
    events.append({"type": "message_stop"})
    return events, blocks


@settings(max_examples=100, deadline=None)
@given(anthropic_streams())
def test_anthropic_upstream_through_canonical_keeps_every_block(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    events, blocks = case
    parser, renderer = UpstreamStreamParser(), PROTOCOL.renderer(ctx())
    raw = renderer.start()
    for event in events:
        for delta in parser.feed(event):
            raw += renderer.feed(delta)
    raw += renderer.finish()
    relayed = parse_sse(raw)
    check_grammar(relayed)
    snapshot = None
    bufs: dict[int, bytes] = {}
    for _, data in relayed:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    got = snapshot.to_dict()["content"]
    # Adjacent blocks of one kind fold into one (canonical deltas carry no block boundaries).
    assert "".join(b["text"] for b in got if b["type"] == "text") == "".join(
        b["text"] for b in blocks if b["type"] == "text"
    )
    assert "".join(b["thinking"] for b in got if b["type"] == "thinking") == "".join(
        b["thinking"] for b in blocks if b["type"] == "thinking"
    )
    assert [b["input"] for b in got if b["type"] == "tool_use"] == [
        b["input"] for b in blocks if b["type"] == "tool_use"
    ]
    assert [b["id"] for b in got if b["type"] == "tool_use"] == [
        b["id"] for b in blocks if b["type"] == "tool_use"
    ]
    # Every upstream signature survives, on a thinking block ending where the upstream's did.
    assert {b["signature"] for b in got if b["type"] == "thinking"} >= {
        b["signature"] for b in blocks if b["type"] == "thinking"
    }
    cache = events[-2]["usage"]["cache_read_input_tokens"]
    assert snapshot.usage.output_tokens == events[-2]["usage"]["output_tokens"]
    assert snapshot.usage.cache_read_input_tokens == cache
    assert snapshot.usage.input_tokens == events[0]["message"]["usage"]["input_tokens"]
