"""Anthropic Messages <-> canonical, whole requests and answers (no streaming here)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import anthropic
import orjson
import pytest

from oneplan import errors
from oneplan.protocols.anthropic import (
    PROTOCOL,
    count_tokens,
    estimate_text_tokens,
    from_upstream,
    is_placeholder_signature,
    placeholder_signature,
    to_upstream,
    upstream_error,
)
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import ChatRequest, ChatResult, Thinking, ToolCall, Usage

PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(fields)
    return base


def ctx(**fields: Any) -> StreamContext:
    return StreamContext(response_id="msg_test123", model="claude-sonnet-4-5", created=0, **fields)


# -- parse -------------------------------------------------------------------------------------


def test_minimal_request_keeps_model_and_limits() -> None:
    req = PROTOCOL.parse(body(stream=True, temperature=0.5, top_p=0.9, top_k=40))
    assert req.model == "claude-sonnet-4-5"  # mapping claude-* names is the router's job
    assert req.max_tokens == 1024
    assert req.messages == [{"role": "user", "content": "hi"}]
    assert req.stream is True
    assert (req.temperature, req.top_p, req.extra["top_k"]) == (0.5, 0.9, 40)
    assert req.include_usage is True


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
        ({"temperature": 1.5}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
    ],
)
def test_invalid_requests_name_the_field(fields: dict[str, Any], param: str) -> None:
    raw = body(**fields)
    if fields.get("max_tokens", 1) is None:
        del raw["max_tokens"]
    with pytest.raises(errors.InvalidRequest) as caught:
        PROTOCOL.parse(raw)
    assert caught.value.param == param
    assert caught.value.message.startswith(param)
    assert caught.value.status == 400


def test_body_must_be_an_object() -> None:
    with pytest.raises(errors.InvalidRequest):
        PROTOCOL.parse([1, 2])


def test_system_string_and_blocks_keep_cache_control() -> None:
    assert PROTOCOL.parse(body(system="be brief")).messages[0] == {
        "role": "system",
        "content": "be brief",
    }
    system = [
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}},
    ]
    first = PROTOCOL.parse(body(system=system)).messages[0]
    assert first == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}},
        ],
    }


def test_images_become_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"}},
        {
            "type": "image",
            "source": {"type": "url", "url": "https://example.com/cat.jpg"},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    msg = PROTOCOL.parse(body(messages=[{"role": "user", "content": content}])).messages[0]
    assert msg["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/cat.jpg"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


def test_file_sources_and_pdfs_are_refused_clearly() -> None:
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "x"}}
    with pytest.raises(errors.InvalidRequest) as caught:
        PROTOCOL.parse(body(messages=[{"role": "user", "content": [doc]}]))
    assert caught.value.param == "messages.0.content.0.source.type"
    text_doc = {"type": "document", "title": "notes", "source": {"type": "text", "data": "abc"}}
    msg = PROTOCOL.parse(body(messages=[{"role": "user", "content": [text_doc]}])).messages[0]
    assert msg["content"] == [{"type": "text", "text": "notes\n\nabc"}]


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two cities.", "signature": "sig-abc"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "timeout"}],
                },
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]


def test_tool_use_thinking_and_tool_results_map_to_chat_messages() -> None:
    msgs = PROTOCOL.parse(body(messages=conversation())).messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user"]
    assistant = msgs[1]
    assert assistant["content"] == "Checking."
    assert assistant["reasoning_content"] == "Two cities."
    assert assistant["reasoning_signature"] == "sig-abc"
    assert [c["id"] for c in assistant["tool_calls"]] == ["toolu_1", "toolu_2"]
    call = assistant["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"]["name"] == "weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "timeout", "is_error": True}
    assert msgs[4] == {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]}


def test_tool_result_with_image_keeps_parts_and_a_user_turn_of_only_results_adds_no_user() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_9",
        "content": [
            {"type": "text", "text": "screenshot:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QQ=="}},
        ],
    }
    msgs = PROTOCOL.parse(body(messages=[{"role": "user", "content": [result]}])).messages
    assert msgs == [
        {
            "role": "tool",
            "tool_call_id": "toolu_9",
            "content": [
                {"type": "text", "text": "screenshot:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}},
            ],
        }
    ]


def test_assistant_with_only_tool_use_has_null_content() -> None:
    turn = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}
    msgs = PROTOCOL.parse(body(messages=[{"role": "user", "content": "go"}, turn])).messages
    assert msgs[1]["content"] is None
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_tools_and_tool_choice() -> None:
    tools = [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        }
    ]
    req = PROTOCOL.parse(body(tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert req.tools == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            # Kept for the upstreams that cache explicitly (dropped on the way to the others).
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert req.tool_choice == "required"
    assert req.parallel_tool_calls is False
    cases = {
        "auto": "auto",
        "none": "none",
    }
    for kind, expected in cases.items():
        parsed = PROTOCOL.parse(body(tools=tools, tool_choice={"type": kind}))
        assert parsed.tool_choice == expected
        assert parsed.parallel_tool_calls is None
    named = PROTOCOL.parse(body(tools=tools, tool_choice={"type": "tool", "name": "weather"}))
    assert named.tool_choice == {"type": "function", "function": {"name": "weather"}}


def test_server_tools_are_refused_with_a_way_out() -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    with pytest.raises(errors.InvalidRequest) as caught:
        PROTOCOL.parse(body(tools=tools))
    assert caught.value.param == "tools.0.type"
    assert "web_search_20250305" in caught.value.message
    assert "custom tool" in caught.value.message


def test_thinking_stop_and_user() -> None:
    req = PROTOCOL.parse(
        body(
            thinking={"type": "enabled", "budget_tokens": 2048},
            stop_sequences=["END", "STOP"],
            metadata={"user_id": "u-42"},
        )
    )
    assert req.thinking == Thinking(enabled=True, budget_tokens=2048)
    assert req.stop == ["END", "STOP"]
    assert req.user == "u-42"
    assert PROTOCOL.parse(body(thinking={"type": "disabled"})).thinking.enabled is False
    assert PROTOCOL.parse(body(thinking={"type": "adaptive"})).thinking.enabled is True
    assert PROTOCOL.parse(body()).thinking.enabled is False  # absent means no extended thinking


def test_structured_output_maps_to_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = PROTOCOL.parse(body(output_format={"type": "json_schema", "schema": schema}))
    assert req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


# -- render ------------------------------------------------------------------------------------


def result(**fields: Any) -> ChatResult:
    return ChatResult(id="up-1", model="qwen3-max", created=0, **fields)


def test_render_orders_thinking_text_tools_and_validates_with_the_sdk() -> None:
    res = result(
        text="Let me check.",
        reasoning="The user wants weather.",
        reasoning_signature="real-sig",
        tool_calls=[
            ToolCall(id="call_1", name="weather", arguments='{"city": "Paris"}'),
            ToolCall(id="", name="clock", arguments=""),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=1000, output_tokens=50, cached_tokens=600, cache_write_tokens=100),
    )
    out = PROTOCOL.render(res, ctx())
    message = anthropic.types.Message.model_validate(out)
    assert message.id == "msg_test123"
    assert message.model == "claude-sonnet-4-5"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert out["content"][0] == {
        "type": "thinking",
        "thinking": "The user wants weather.",
        "signature": "real-sig",
    }
    assert out["content"][2]["input"] == {"city": "Paris"}
    assert out["content"][3]["input"] == {}
    assert out["content"][3]["id"].startswith("toolu_")
    assert message.stop_reason == "tool_use"
    # Anthropic's input_tokens exclude cache reads and writes.
    assert out["usage"] == {
        "input_tokens": 300,
        "output_tokens": 50,
        "cache_read_input_tokens": 600,
        "cache_creation_input_tokens": 100,
    }


def test_placeholder_signature_is_stable_and_recognisable() -> None:
    first = PROTOCOL.render(result(reasoning="hmm"), ctx())["content"][0]["signature"]
    second = PROTOCOL.render(result(reasoning="hmm"), ctx())["content"][0]["signature"]
    assert first == second == placeholder_signature("hmm")
    assert is_placeholder_signature(first)
    assert not is_placeholder_signature("EqQBCkgIARABGAIiQL")
    assert placeholder_signature("other") != first


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ('"{\\"a\\": 1}"', {"a": 1}),  # double-encoded by some upstreams
        ('{"a": 1', {"_raw_arguments": '{"a": 1'}),  # truncated: never crash
        ("[1, 2]", {"_raw_arguments": "[1, 2]"}),
    ],
)
def test_tool_input_is_best_effort(arguments: str, expected: dict[str, Any]) -> None:
    res = result(tool_calls=[ToolCall(id="c", name="f", arguments=arguments)], finish_reason="tool_calls")
    block = PROTOCOL.render(res, ctx())["content"][0]
    assert block["input"] == expected


@pytest.mark.parametrize(
    ("finish", "calls", "expected"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("stop", True, "tool_use"),  # upstreams that end a tool turn with "stop"
        ("content_filter", False, "refusal"),
        ("length", True, "max_tokens"),
    ],
)
def test_stop_reasons(finish: str, calls: bool, expected: str) -> None:
    tool_calls = [ToolCall(id="c", name="f", arguments="{}")] if calls else []
    out = PROTOCOL.render(result(text="x", finish_reason=finish, tool_calls=tool_calls), ctx())
    assert out["stop_reason"] == expected
    assert out["stop_sequence"] is None


def test_stop_sequence_reported_when_the_text_ends_with_one() -> None:
    request = ChatRequest(model="m", messages=[], stop=["###", "END"])
    out = PROTOCOL.render(result(text="done END"), ctx(request=request))
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    out = PROTOCOL.render(result(text="done"), ctx(request=request))
    assert (out["stop_reason"], out["stop_sequence"]) == ("end_turn", None)


def test_empty_answer_still_has_a_text_block() -> None:
    out = PROTOCOL.render(result(), ctx())
    assert out["content"] == [{"type": "text", "text": ""}]
    anthropic.types.Message.model_validate(out)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.InvalidRequest("bad"), "invalid_request_error"),
        (errors.RequestTooLarge("big"), "request_too_large"),
        (errors.AuthenticationFailed("key"), "authentication_error"),
        (errors.ModelNotInPlan("plan"), "permission_error"),
        (errors.ModelNotFound("gone"), "not_found_error"),
        (errors.QuotaExceeded("slow", retry_after=3, window="5h"), "rate_limit_error"),
        (errors.OneplanError("boom"), "api_error"),
        (errors.UpstreamError("bad gateway"), "api_error"),
        (errors.UpstreamTimeout("slow"), "timeout_error"),
        (errors.UpstreamUnavailable("busy"), "overloaded_error"),
        (errors.UpstreamRateLimited("429"), "rate_limit_error"),
        (errors.UpstreamRejected("nope", upstream_status=422), "invalid_request_error"),
        (errors.UpstreamRejected("nope", upstream_status=401), "api_error"),
    ],
)
def test_error_bodies_use_anthropic_types(error: errors.OneplanError, kind: str) -> None:
    out = PROTOCOL.error_body(error)
    assert out == {"type": "error", "error": {"type": kind, "message": error.message}}
    if kind != "request_too_large":  # documented by Anthropic, absent from the SDK's union
        parsed = anthropic.types.ErrorResponse.model_validate(out)
        assert parsed.error.type == kind


# -- upstream direction ------------------------------------------------------------------------


def test_to_upstream_round_trips_an_anthropic_conversation() -> None:
    system = [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "weather", "description": "d", "input_schema": {"type": "object", "properties": {}}}]
    original = body(
        system=system,
        messages=conversation(),
        tools=tools,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        temperature=0.2,
        top_k=5,
        metadata={"user_id": "u1"},
        thinking={"type": "enabled", "budget_tokens": 2000},
        stream=True,
    )
    out = to_upstream(PROTOCOL.parse(original), "glm-4.6")
    assert out["model"] == "glm-4.6"
    assert out["system"] == system
    assert out["tools"] == tools
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert (out["max_tokens"], out["stop_sequences"], out["temperature"], out["top_k"]) == (
        1024 + 2000,  # the budget does not fit under 1024 and can't go below 1024
        ["END"],
        0.2,
        5,
    )
    assert out["metadata"] == {"user_id": "u1"} and out["stream"] is True
    user, assistant, results = out["messages"]
    assert user == {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]}
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "Two cities.", "signature": "sig-abc"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "timeout", "is_error": True},
            {"type": "text", "text": "and tomorrow?"},
        ],
    }
    anthropic.types.MessageCreateParams  # noqa: B018 - the SDK's request type exists


def test_to_upstream_from_openai_shaped_history() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            {"role": "system", "content": "sys one"},
            {"role": "developer", "content": [{"type": "text", "text": "sys two"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AA=="}},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "think",
                "tool_calls": [
                    {
                        "id": "functions.search:0",  # Kimi's ids are not valid Anthropic ids
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"q": "x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "functions.search:0", "content": "found"},
            {"role": "assistant", "content": "done"},
        ],
        tool_choice="required",
        max_tokens=None,
        thinking=Thinking(effort="high"),
    )
    out = to_upstream(request, "kimi-k2")
    assert out["system"] == "sys one\n\nsys two"
    assert out["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AA=="},
    }
    thinking, tool_use = out["messages"][1]["content"]
    assert thinking["signature"] == placeholder_signature("think")
    assert tool_use["id"] == "functions_search_0"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "functions_search_0"
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user", "assistant"]
    assert out["tool_choice"] == {"type": "any"}
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8191}
    assert out["max_tokens"] == 8192
    assert "stream" not in out


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "expected", "expected_max"),
    [
        (Thinking(enabled=False), 100, {"type": "disabled"}, 100),
        (Thinking(), 100, None, 100),
        (Thinking(enabled=True), 32000, {"type": "enabled", "budget_tokens": 4096}, 32000),
        (Thinking(enabled=True, budget_tokens=10), 32000, {"type": "enabled", "budget_tokens": 1024}, 32000),
        (Thinking(enabled=True, budget_tokens=9000), 4000, {"type": "enabled", "budget_tokens": 3999}, 4000),
        (Thinking(effort="none"), 4000, {"type": "disabled"}, 4000),
    ],
)
def test_thinking_budget_fits_anthropic_rules(
    thinking: Thinking, max_tokens: int, expected: dict[str, Any] | None, expected_max: int
) -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=max_tokens)
    request.thinking = thinking
    out = to_upstream(request, "m")
    assert out.get("thinking") == expected
    assert out["max_tokens"] == expected_max
    if expected and expected["type"] == "enabled":
        assert 1024 <= expected["budget_tokens"] < out["max_tokens"]


def test_from_upstream_counts_cache_inside_input() -> None:
    message = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "glm-4.6",
        "content": [
            {"type": "thinking", "thinking": "a", "signature": "s1"},
            {"type": "redacted_thinking", "data": "zzz"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "toolu_x", "name": "f", "input": {"k": [1]}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    }
    res = from_upstream(message, created=7)
    assert (res.id, res.model, res.created) == ("msg_up", "glm-4.6", 7)
    assert (res.text, res.reasoning, res.reasoning_signature) == ("Hello", "a", "s1")
    assert res.tool_calls == [ToolCall(id="toolu_x", name="f", arguments='{"k":[1]}')]
    assert res.finish_reason == "tool_calls"
    assert res.usage == Usage(input_tokens=115, output_tokens=20, cached_tokens=100, cache_write_tokens=5)
    # And back out to an Anthropic client, the counts are what the upstream said.
    assert PROTOCOL.render(res, ctx())["usage"] == message["usage"]


@pytest.mark.parametrize(
    ("status", "kind", "cls", "client_status"),
    [
        (529, "overloaded_error", errors.UpstreamUnavailable, 503),
        (None, "overloaded_error", errors.UpstreamUnavailable, 503),
        (429, "rate_limit_error", errors.UpstreamRateLimited, 429),
        (None, "timeout_error", errors.UpstreamTimeout, 504),
        (400, "invalid_request_error", errors.UpstreamRejected, 400),
        (401, "authentication_error", errors.UpstreamRejected, 502),  # operator's key, not caller's
        (500, "api_error", errors.UpstreamError, 502),
    ],
)
def test_upstream_errors_map_to_the_tree(
    status: int | None, kind: str, cls: type[errors.UpstreamError], client_status: int
) -> None:
    err = upstream_error(status, {"type": "error", "error": {"type": kind, "message": "m"}})
    assert type(err) is cls
    assert err.status == client_status
    assert kind in err.message


def test_from_upstream_raises_on_error_bodies() -> None:
    with pytest.raises(errors.UpstreamUnavailable):
        from_upstream({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})


# -- count_tokens ------------------------------------------------------------------------------


def png(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)
    return base64.b64encode(header + b"\x08\x06\x00\x00\x00" + b"\x00" * 16).decode()


def test_text_estimate_per_script() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd" * 25) == 25
    assert estimate_text_tokens("你好世界") == 4
    assert estimate_text_tokens("こんにちは") == 5
    assert estimate_text_tokens("привет") == 3


def test_count_tokens_grows_with_content_and_tools() -> None:
    small = count_tokens(body())
    bigger = count_tokens(body(messages=[{"role": "user", "content": "hi " * 400}]))
    assert 0 < small < bigger
    tool = {"name": "f", "description": "does f", "input_schema": {"type": "object"}}
    with_tools = count_tokens(body(tools=[tool]))
    assert with_tools - small > 300  # Anthropic's tool-use preamble
    assert PROTOCOL.count_tokens(body()) == {"input_tokens": small}


def test_count_tokens_reads_image_size() -> None:
    def image(data: str) -> dict[str, Any]:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        return body(messages=[{"role": "user", "content": [{"type": "image", "source": source}]}])

    base = count_tokens(body(messages=[{"role": "user", "content": []}]))
    assert count_tokens(image(png(750, 100))) - base == 100
    assert count_tokens(image(png(4000, 4000))) - base == 1534  # downscaled to ~1.15 MP
    assert count_tokens(image(PNG_1X1)) - base == 1
    assert count_tokens(image("not base64!")) - base == 1600


def test_count_tokens_uses_a_given_tokenizer() -> None:
    seen: list[str] = []

    def tokenizer(text: str) -> int:
        seen.append(text)
        return 1000

    total = count_tokens(body(system="sys"), tokenizer=tokenizer)
    assert seen == ["sys", "hi"]
    assert total >= 2000


def test_count_tokens_validates_messages() -> None:
    with pytest.raises(errors.InvalidRequest):
        count_tokens({"model": "m"})
