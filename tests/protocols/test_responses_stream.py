"""The Responses event stream: what the openai SDK's stream reader and Codex CLI consume."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from oneplan.errors import QuotaExceeded, UpstreamError
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import Accumulator, Delta, ToolCallDelta, Usage
from oneplan.protocols.responses import (
    PROTOCOL,
    UpstreamStreamParser,
    parse_envelope,
    render_response,
    renderer_for,
)

EVENT = TypeAdapter(ResponseStreamEvent)


def ctx(request: Any = None) -> StreamContext:
    return StreamContext(response_id="resp_test", model="qwen-plus", created=1700000000, request=request)


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """Split SSE frames; each frame's ``event:`` line must name its data's ``type``."""
    assert raw.endswith(b"\n\n")
    events = []
    for frame in raw.decode().split("\n\n")[:-1]:
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        event = orjson.loads(lines[1][len("data: ") :])
        assert event["type"] == lines[0][len("event: ") :]
        EVENT.validate_python(event)  # the SDK's own event types
        events.append(event)
    return events


def run(deltas: list[Delta], envelope: Any = None, request: Any = None) -> list[dict[str, Any]]:
    renderer = renderer_for(ctx(request), envelope)
    raw = renderer.start() + b"".join(renderer.feed(d) for d in deltas) + renderer.finish()
    assert b"[DONE]" not in raw
    return events_of(raw)


def check_well_formed(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The invariants every client relies on; returns the final response."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    open_items: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    streamed: dict[int, list[str]] = {}
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "response.output_item.added":
            index = event["output_index"]
            assert index == len(open_items) + len(done), "output indexes open in order"
            assert index not in open_items and index not in done
            open_items[index] = event["item"]
            streamed[index] = []
        elif kind == "response.output_item.done":
            index = event["output_index"]
            assert index in open_items, "done once, after added"
            assert open_items.pop(index)["id"] == event["item"]["id"]
            done[index] = event["item"]
        else:
            index = event["output_index"]
            assert index in open_items, f"{kind} for an item that is not open"
            assert event["item_id"] == open_items[index]["id"]
            if kind.endswith(".delta"):
                streamed[index].append(event["delta"])
    assert not open_items, "every item added is done"
    final = events[-1]["response"]
    Response.model_validate(final)
    assert final["output"] == [done[i] for i in range(len(done))]
    for index, item in done.items():  # each item says what its deltas said
        joined = "".join(streamed[index])
        if item["type"] == "message":
            assert item["content"][0]["text"] == joined
        elif item["type"] == "reasoning":
            assert "".join(s["text"] for s in item["summary"]) == joined
        elif item["type"] == "function_call":
            assert item["arguments"] == joined
    return final


def test_text_stream_event_order_and_shapes() -> None:
    events = run([Delta(text="Hel"), Delta(text="lo"), Delta(finish_reason="stop", usage=Usage(7, 2))])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = check_well_formed(events)
    assert Response.model_validate(final).output_text == "Hello"
    assert final["usage"]["total_tokens"] == 9
    assert events[4]["logprobs"] == [] and events[4]["content_index"] == 0


def test_reasoning_then_text_then_call() -> None:
    deltas = [
        Delta(reasoning="Let me "),
        Delta(reasoning="think."),
        Delta(text="Checking."),
        Delta(tool_calls=[ToolCallDelta(0, "call_a", "get_weather", '{"city":')]),
        Delta(tool_calls=[ToolCallDelta(0, None, None, '"Paris"}')]),
        Delta(finish_reason="tool_calls"),
    ]
    events = run(deltas)
    final = check_well_formed(events)
    kinds = [e["type"] for e in events]
    assert kinds.index("response.reasoning_summary_part.added") < kinds.index(
        "response.reasoning_summary_text.delta"
    )
    assert "response.reasoning_summary_part.done" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    call = final["output"][2]
    assert call["call_id"] == "call_a" and call["arguments"] == '{"city":"Paris"}'
    assert call["id"].startswith("fc_") and call["status"] == "completed"
    assert final["usage"] is None  # the upstream said nothing: nothing invented


def test_length_ends_with_response_incomplete() -> None:
    events = run([Delta(text="cut"), Delta(finish_reason="length", usage=Usage(3, 1))])
    final = check_well_formed(events)
    assert events[-1]["type"] == "response.incomplete"
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_empty_answer_still_has_a_message() -> None:
    final = check_well_formed(run([Delta(finish_reason="stop")]))
    assert Response.model_validate(final).output_text == ""
    assert final["output"][0]["type"] == "message"


def test_call_name_arriving_late_is_announced_with_its_arguments() -> None:
    events = run(
        [
            Delta(tool_calls=[ToolCallDelta(0, "call_x", None, '{"a"')]),
            Delta(tool_calls=[ToolCallDelta(0, None, "f", ":1}")]),
        ]
    )
    final = check_well_formed(events)
    assert final["output"][0]["name"] == "f"
    assert final["output"][0]["arguments"] == '{"a":1}'


def test_parallel_calls_interleaved_land_in_their_own_items() -> None:
    events = run(
        [
            Delta(tool_calls=[ToolCallDelta(0, "c0", "f", "{")]),
            Delta(tool_calls=[ToolCallDelta(1, "c1", "g", "[")]),
            Delta(tool_calls=[ToolCallDelta(0, None, None, "}")]),
            Delta(tool_calls=[ToolCallDelta(1, None, None, "]")]),
        ]
    )
    final = check_well_formed(events)
    assert [(i["call_id"], i["arguments"]) for i in final["output"]] == [("c0", "{}"), ("c1", "[]")]


def test_custom_tool_call_streams_its_raw_input() -> None:
    body = {
        "model": "m",
        "input": "patch it",
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Apply a patch"}],
    }
    envelope = parse_envelope(body)
    events = run(
        [
            Delta(tool_calls=[ToolCallDelta(0, "call_p", "apply_patch", '{"input":"*** Begin')]),
            Delta(tool_calls=[ToolCallDelta(0, None, None, ' Patch\\n"}')]),
        ],
        envelope,
        PROTOCOL.parse(body),
    )
    final = check_well_formed(events)
    item = final["output"][0]
    assert item["type"] == "custom_tool_call" and item["input"] == "*** Begin Patch\n"
    done = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done[0]["input"] == "*** Begin Patch\n"


def test_encrypted_reasoning_only_when_included_and_carries_the_signature() -> None:
    deltas = [Delta(reasoning="hmm"), Delta(reasoning_signature="sig-1"), Delta(text="ok")]
    plain = check_well_formed(run(deltas))
    assert "encrypted_content" not in plain["output"][0]
    body = {"model": "m", "input": "x", "include": ["reasoning.encrypted_content"]}
    final = check_well_formed(run(deltas, parse_envelope(body)))
    # Sent back on the next turn, the blob restores the reasoning and its signature.
    follow_up = {"model": "m", "input": [*final["output"], {"role": "user", "content": "more"}]}
    assistant = PROTOCOL.parse(follow_up).messages[0]
    assert assistant["reasoning_content"] == "hmm"
    assert assistant["reasoning_signature"] == "sig-1"


def test_stream_final_response_equals_the_non_streamed_render() -> None:
    body = {"model": "m", "input": "hi", "metadata": {"k": "v"}, "store": False}
    envelope = parse_envelope(body)
    request = PROTOCOL.parse(body)
    deltas = [
        Delta(reasoning="r"),
        Delta(text="t"),
        Delta(tool_calls=[ToolCallDelta(0, "c", "f", "{}")]),
        Delta(finish_reason="tool_calls", usage=Usage(5, 5, cached_tokens=2, reasoning_tokens=1)),
    ]
    final = check_well_formed(run(deltas, envelope, request))
    acc = Accumulator()
    for d in deltas:
        acc.add(d)
    whole = render_response(acc.result(id="x", model="m", created=1), ctx(request), envelope)
    for key in ("output", "usage", "status", "metadata", "store", "tools"):
        assert final[key] == whole[key], key
    assert final["metadata"] == {"k": "v"} and final["store"] is False


def test_fail_sends_response_failed_with_an_api_error_code() -> None:
    renderer = renderer_for(ctx())
    raw = renderer.start() + renderer.feed(Delta(text="par"))
    raw += renderer.fail(QuotaExceeded("daily budget spent", retry_after=30, window="day"))
    events = events_of(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    failed = events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    error = failed["response"]["error"]
    assert error["code"] == "rate_limit_exceeded"  # Codex waits and retries on this code
    assert "try again in 30s" in error["message"]
    Response.model_validate(failed["response"])


def test_fail_before_start_still_opens_the_stream() -> None:
    events = events_of(renderer_for(ctx()).fail(UpstreamError("boom")))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1]["response"]["error"]["code"] == "server_error"


def test_ping_is_an_sse_comment() -> None:
    assert renderer_for(ctx()).ping().startswith(b":")


# --------------------------------------------------------------------------- property test


@st.composite
def delta_streams(draw: st.DrawFn) -> list[Delta]:
    """Any well-formed upstream: text, reasoning and tool-call runs interleaved; within a run
    the calls' argument deltas interleave; each call's first delta has its id and name."""
    deltas: list[Delta] = []
    chunk = st.text(min_size=1, max_size=5)
    for run_no in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "reasoning", "both", "calls"]))
        if kind == "calls":
            started: set[int] = set()
            for _ in range(draw(st.integers(1, 6))):
                index = draw(st.integers(0, 2))
                args = draw(st.text(max_size=6))
                if index in started:
                    deltas.append(Delta(tool_calls=[ToolCallDelta(index, arguments=args)]))
                else:
                    started.add(index)
                    call = ToolCallDelta(index, f"call_{run_no}_{index}", f"fn{index}", args)
                    deltas.append(Delta(tool_calls=[call]))
        else:
            for _ in range(draw(st.integers(1, 4))):
                text = draw(chunk) if kind in ("text", "both") else None
                reasoning = draw(chunk) if kind in ("reasoning", "both") else None
                deltas.append(Delta(text=text, reasoning=reasoning))
    finish = draw(st.sampled_from([None, "stop", "length", "tool_calls", "content_filter"]))
    usage = draw(
        st.none()
        | st.builds(
            Usage,
            input_tokens=st.integers(0, 10**6),
            output_tokens=st.integers(0, 10**6),
            cached_tokens=st.integers(0, 100),
            reasoning_tokens=st.integers(0, 100),
        )
    )
    if finish or usage:
        deltas.append(Delta(finish_reason=finish, usage=usage))
    return deltas


def expected_calls(deltas: list[Delta]) -> list[tuple[str, str, str]]:
    """(call_id, name, arguments) per call: a call lives within one run of tool-call deltas."""
    calls: list[tuple[str, str, str]] = []
    run: dict[int, list[str]] = {}
    order: list[tuple[int, str, str]] = []

    def close() -> None:
        calls.extend((cid, name, "".join(run[i])) for i, cid, name in order)
        run.clear()
        order.clear()

    for delta in deltas:
        if delta.text or delta.reasoning:
            close()
        for tc in delta.tool_calls or []:
            if tc.index not in run:
                run[tc.index] = []
                order.append((tc.index, tc.id or "", tc.name or ""))
            run[tc.index].append(tc.arguments)
    close()
    return calls


@settings(max_examples=300, deadline=None)
@given(delta_streams())
def test_any_delta_stream_becomes_a_well_formed_event_stream(deltas: list[Delta]) -> None:
    events = run(deltas)
    final = check_well_formed(events)
    output = final["output"]
    texts = [i["content"][0]["text"] for i in output if i["type"] == "message"]
    summaries = [s["text"] for i in output if i["type"] == "reasoning" for s in i["summary"]]
    calls = [(i["call_id"], i["name"], i["arguments"]) for i in output if i["type"] == "function_call"]
    assert "".join(texts) == "".join(d.text or "" for d in deltas)
    assert "".join(summaries) == "".join(d.reasoning or "" for d in deltas)
    assert calls == expected_calls(deltas)
    acc = Accumulator()
    for d in deltas:
        acc.add(d)
    result = acc.result(id="x", model="m", created=1)
    if acc.usage is None:
        assert final["usage"] is None
    else:
        usage = final["usage"]
        assert usage["input_tokens"] == acc.usage.input_tokens
        assert usage["output_tokens"] == acc.usage.output_tokens
        assert usage["total_tokens"] == acc.usage.total_tokens
        assert usage["input_tokens_details"]["cached_tokens"] == acc.usage.cached_tokens
        assert usage["output_tokens_details"]["reasoning_tokens"] == acc.usage.reasoning_tokens
    incomplete = result.finish_reason in ("length", "content_filter")
    assert final["status"] == ("incomplete" if incomplete else "completed")
    # Our own upstream parser reads the stream back to the same answer.
    parser = UpstreamStreamParser()
    back = Accumulator()
    for event in events:
        for delta in parser.feed(event):
            back.add(delta)
    assert back.text == acc.text
    assert back.reasoning == acc.reasoning
    assert [(c.id, c.name, c.arguments) for c in back.tool_calls] == calls
    assert (back.usage is None) == (acc.usage is None)


@pytest.mark.parametrize("finish", ["stop", "tool_calls"])
def test_completed_event_is_terminal_and_usage_is_final(finish: str) -> None:
    events = run([Delta(text="a"), Delta(usage=Usage(1, 1)), Delta(finish_reason=finish, usage=Usage(2, 3))])
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["output_tokens"] == 3


# --------------------------------------------------------------------------- the SDK's own reader


def sdk_client(payload: bytes, content_type: str) -> Any:
    """An openai client whose transport answers with ``payload``: the SDK's real stream reader
    and accumulator (``client.responses.stream``) run over our bytes, no network involved."""
    import httpx
    import openai

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=payload, headers={"content-type": content_type})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return openai.OpenAI(api_key="k", base_url="http://oneplan.test/v1", http_client=http)


def test_the_openai_sdk_stream_helper_accumulates_our_stream() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    }
    renderer = renderer_for(ctx(PROTOCOL.parse(body)), parse_envelope(body))
    raw = renderer.start()
    for delta in [
        Delta(reasoning="plan"),
        Delta(text="Hel"),
        Delta(text="lo"),
        Delta(tool_calls=[ToolCallDelta(0, "c1", "f", '{"a":')]),
        Delta(tool_calls=[ToolCallDelta(0, None, None, "1}")]),
        Delta(finish_reason="tool_calls", usage=Usage(4, 6)),
    ]:
        raw += renderer.feed(delta)
    raw += renderer.finish()
    client = sdk_client(raw, "text/event-stream")
    with client.responses.stream(model="m", input="hi", tools=body["tools"]) as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.output_text.delta" in seen and seen[-1] == "response.completed"
    assert final.output_text == "Hello"
    call = final.output[-1]
    assert call.type == "function_call" and call.arguments == '{"a":1}' and call.call_id == "c1"
    assert final.usage is not None and final.usage.total_tokens == 10


def test_the_openai_sdk_reads_a_whole_response() -> None:
    from oneplan.protocols.canonical import ChatResult

    answer = ChatResult(id="x", model="m", created=1, text="Hi there", usage=Usage(2, 2))
    body = render_response(answer, ctx(PROTOCOL.parse({"model": "m", "input": "hi"})))
    response = sdk_client(orjson.dumps(body), "application/json").responses.create(model="m", input="hi")
    assert response.output_text == "Hi there" and response.id == "resp_test"
