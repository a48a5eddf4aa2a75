"""Responses requests -> canonical, canonical answers -> Response objects, and the pass-through
helpers for upstreams that speak Responses natively."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response

from oneplan.errors import (
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from oneplan.protocols.base import StreamContext
from oneplan.protocols.canonical import (
    Accumulator,
    ChatRequest,
    ChatResult,
    Thinking,
    ToolCall,
    Usage,
)
from oneplan.protocols.responses import (
    PROTOCOL,
    UpstreamStreamParser,
    from_upstream,
    input_items,
    output_items,
    parse_envelope,
    prepend_history,
    render_response,
    to_upstream,
)


def parse(**body: Any) -> ChatRequest:
    return PROTOCOL.parse({"model": "qwen-plus", **body})


def ctx(request: ChatRequest | None = None) -> StreamContext:
    return StreamContext(response_id="resp_1", model="qwen-plus", created=1700000000, request=request)


# --------------------------------------------------------------------------- input


def test_string_input_and_instructions() -> None:
    request = parse(input="Hi", instructions="Be brief.", stream=True)
    assert PROTOCOL.name == "responses"
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert request.stream is True and request.include_usage is True


def test_message_parts_and_roles() -> None:
    request = parse(
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "high"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        ]
    )
    assert request.messages[0] == {"role": "system", "content": "Rules."}
    assert request.messages[1]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    assert request.messages[2] == {"role": "assistant", "content": "A cat."}
    assert request.messages[3]["content"] == "No."


def test_function_calls_merge_into_the_preceding_assistant_message() -> None:
    request = parse(
        input=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two cities."}]},
            {"role": "assistant", "content": "Checking both."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "2"}, {"type": "input_text", "text": "1C"}],
            },
        ]
    )
    _user, assistant, out1, out2 = request.messages
    assert assistant["content"] == "Checking both."
    assert assistant["reasoning_content"] == "Two cities."
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][1]["function"] == {"name": "weather", "arguments": '{"city":"Rome"}'}
    assert out1 == {"role": "tool", "tool_call_id": "c1", "content": "18C"}
    assert out2["content"] == "21C"


def test_calls_without_an_assistant_message_make_one() -> None:
    request = parse(
        input=[
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "1"},
            {"type": "function_call_output", "call_id": "b", "output": "2"},
        ]
    )
    assert request.messages[1]["content"] is None
    assert len(request.messages[1]["tool_calls"]) == 2
    assert [m["role"] for m in request.messages] == ["user", "assistant", "tool", "tool"]


def test_reasoning_not_followed_by_an_assistant_turn_is_dropped() -> None:
    request = parse(
        input=[
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "old"}]},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]
    )
    assert "reasoning_content" not in request.messages[1]


def test_foreign_encrypted_reasoning_falls_back_to_its_text() -> None:
    request = parse(
        input=[
            {"role": "user", "content": "q"},
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "summary"}],
                "encrypted_content": "gAAAAB-openai-secret",
            },
            {"role": "assistant", "content": "a"},
        ]
    )
    assert request.messages[1]["reasoning_content"] == "summary"
    assert "reasoning_signature" not in request.messages[1]


def test_item_reference_needs_a_resolver() -> None:
    body = {"model": "m", "input": [{"type": "item_reference", "id": "msg_9"}]}
    with pytest.raises(InvalidRequest, match="item_reference"):
        PROTOCOL.parse(body)
    stored = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    request = PROTOCOL.parse(body, resolve={"msg_9": stored}.get)
    assert request.messages == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x"},  # no model
        {"model": "m", "input": 3},
        {"model": "m", "input": [{"role": "robot", "content": "x"}]},
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
        {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
        {"model": "m", "input": []},
        {"model": "m", "input": "x", "max_output_tokens": 0},
        {"model": "m", "input": "x", "tool_choice": 5, "tools": [{"type": "function", "name": "f"}]},
        {"model": "m", "input": [{"type": 7, "role": "user", "content": "x"}]},
        {"model": "m", "input": "x", "temperature": "hot"},
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}},
        [],
    ],
)
def test_invalid_requests_are_refused_with_a_clear_error(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        PROTOCOL.parse(body)


def test_empty_input_is_fine_when_continuing() -> None:
    request = PROTOCOL.parse({"model": "m", "previous_response_id": "resp_0"})
    assert request.messages == []


# --------------------------------------------------------------------------- options


def test_tools_function_custom_namespace_and_hosted() -> None:
    request = parse(
        input="x",
        tools=[
            {
                "type": "function",
                "name": "f",
                "description": "F.",
                "parameters": {"type": "object"},
                "strict": True,
            },
            {
                "type": "custom",
                "name": "apply_patch",
                "description": "Patch.",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
            },
            {
                "type": "namespace",
                "name": "mcp_git",
                "description": "git",
                "tools": [{"type": "function", "name": "log", "parameters": {"type": "object"}}],
            },
            {"type": "web_search"},
            {"type": "image_generation", "output_format": "png"},
            {"type": "local_shell"},
            {"type": "file_search", "vector_store_ids": ["vs"]},
        ],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    names = [t["function"]["name"] for t in request.tools or []]
    assert names == ["f", "apply_patch", "mcp_git__log"]
    f, patch, _ = request.tools or []
    assert f["function"] == {
        "name": "f",
        "description": "F.",
        "parameters": {"type": "object"},
        "strict": True,
    }
    assert patch["function"]["parameters"]["required"] == ["input"]
    assert "start: /.+/" in patch["function"]["description"]
    assert request.tool_choice == "required" and request.parallel_tool_calls is False


def test_only_hosted_tools_means_no_tools() -> None:
    request = parse(input="x", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
    assert request.tools is None and request.tool_choice is None


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
        (
            {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]},
            "required",
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    tools = [{"type": "function", "name": n, "parameters": {}} for n in ("f", "g")]
    request = parse(input="x", tools=tools, tool_choice=choice)
    assert request.tool_choice == expected
    if isinstance(choice, dict) and choice["type"] == "allowed_tools":
        assert [t["function"]["name"] for t in request.tools or []] == ["f"]


@pytest.mark.parametrize(
    ("effort", "enabled"),
    [("none", False), ("minimal", False), ("low", True), ("medium", True), ("high", True), ("xhigh", True)],
)
def test_reasoning_effort(effort: str, enabled: bool) -> None:
    request = parse(input="x", reasoning={"effort": effort, "summary": "auto"})
    assert request.thinking == Thinking(enabled=enabled, effort=effort)


def test_no_reasoning_leaves_the_provider_default() -> None:
    assert parse(input="x").thinking == Thinking()


def test_sampling_and_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = parse(
        input="x",
        max_output_tokens=100,
        temperature=0.2,
        top_p=0.9,
        user="u1",
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        store=False,
        truncation="auto",
        service_tier="flex",
        prompt_cache_key="k",
        include=["reasoning.encrypted_content"],
        metadata={"a": "b"},
    )
    assert (request.max_tokens, request.temperature, request.top_p, request.user) == (100, 0.2, 0.9, "u1")
    assert request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert request.extra == {}  # nothing OpenAI-only leaks to other upstreams
    assert parse(input="x", text={"format": {"type": "json_object"}}).response_format == {
        "type": "json_object"
    }
    assert parse(input="x", text={"format": {"type": "text"}}).response_format is None


CODEX_BODY: dict[str, Any] = {
    "model": "qwen3-coder",
    "instructions": "You are Codex.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<permissions>"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the bug"}]},
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "look"}],
            "encrypted_content": None,
        },
        {
            "type": "function_call",
            "name": "shell_command",
            "arguments": '{"command":"ls"}',
            "call_id": "call_1",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "main.py"},
        {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
        {
            "type": "local_shell_call",
            "call_id": "call_3",
            "status": "completed",
            "action": {"type": "exec", "command": ["pwd"]},
        },
        {"type": "local_shell_call_output", "call_id": "call_3", "output": "/repo"},
        {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "compaction", "encrypted_content": "opaque"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed."}]},
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell_command",
            "description": "Run",
            "strict": False,
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Patch files",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"},
        },
        {"type": "web_search", "external_web_access": False},
        {"type": "image_generation", "output_format": "png"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "thread-1",
    "text": {"verbosity": "medium"},
}


def test_a_codex_request_translates() -> None:
    request = PROTOCOL.parse(CODEX_BODY)
    roles = [m["role"] for m in request.messages]
    assert roles == [
        "system",
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    patch_call = request.messages[5]["tool_calls"][0]
    assert patch_call["function"] == {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}
    shell = request.messages[7]["tool_calls"][0]
    assert shell["id"] == "call_3" and orjson.loads(shell["function"]["arguments"])["action"]["command"] == [
        "pwd"
    ]
    assert request.messages[3]["reasoning_content"] == "look"
    assert [t["function"]["name"] for t in request.tools or []] == ["shell_command", "apply_patch"]
    assert request.thinking.enabled is True and request.stream is True


def test_envelope_keeps_what_the_response_echoes() -> None:
    envelope = parse_envelope(CODEX_BODY)
    assert envelope.store is False and envelope.include_encrypted_reasoning
    assert envelope.tools == CODEX_BODY["tools"] and envelope.instructions == "You are Codex."
    assert envelope.tool_map.custom == frozenset({"apply_patch"})
    assert envelope.input == CODEX_BODY["input"]
    defaults = parse_envelope({"model": "m", "input": "hi", "previous_response_id": "resp_0"})
    assert defaults.store is True  # the API's default; the server decides whether it stores
    assert defaults.previous_response_id == "resp_0" and defaults.metadata is None


def test_input_items_are_normalised() -> None:
    assert input_items({"input": "hi"}) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert input_items({"input": [{"role": "assistant", "content": "yo"}]}) == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo"}]}
    ]


# --------------------------------------------------------------------------- output


def result(**kw: Any) -> ChatResult:
    return ChatResult(id="chatcmpl-1", model="up", created=1, **kw)


def test_render_text_answer_validates_with_the_sdk() -> None:
    request = parse(input="hi", metadata={"k": "v"}, temperature=0.5)
    body = render_response(
        result(text="Hello", usage=Usage(10, 4, cached_tokens=3, reasoning_tokens=1)),
        ctx(request),
        parse_envelope({"model": "m", "input": "hi", "metadata": {"k": "v"}, "temperature": 0.5}),
    )
    response = Response.model_validate(body)
    assert response.output_text == "Hello"
    assert response.id == "resp_1" and response.object == "response" and response.status == "completed"
    assert body["output"][0]["id"].startswith("msg_")
    assert body["output"][0]["content"][0]["annotations"] == []
    assert body["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 14,
    }
    assert body["metadata"] == {"k": "v"} and body["temperature"] == 0.5
    assert "output_text" not in body  # an SDK property, not a wire field


def test_render_without_envelope_echoes_the_request() -> None:
    request = parse(
        input="x",
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        tool_choice={"type": "function", "name": "f"},
        max_output_tokens=9,
    )
    body = PROTOCOL.render(
        result(tool_calls=[ToolCall("c", "f", "{}")], finish_reason="tool_calls"), ctx(request)
    )
    Response.model_validate(body)
    assert body["tools"][0]["name"] == "f" and body["tool_choice"] == {"type": "function", "name": "f"}
    assert body["max_output_tokens"] == 9
    assert [i["type"] for i in body["output"]] == ["function_call"]
    assert body["output"][0]["id"].startswith("fc_") and body["output"][0]["status"] == "completed"


def test_render_reasoning_and_calls() -> None:
    body = render_response(
        result(
            text="ok",
            reasoning="thinking",
            tool_calls=[ToolCall("c1", "f", '{"a":1}')],
            finish_reason="tool_calls",
        ),
        ctx(),
    )
    response = Response.model_validate(body)
    assert [i.type for i in response.output] == ["reasoning", "message", "function_call"]
    assert body["output"][0]["summary"] == [{"type": "summary_text", "text": "thinking"}]
    assert "encrypted_content" not in body["output"][0]


def test_render_length_is_incomplete() -> None:
    body = render_response(result(text="cut", finish_reason="length"), ctx())
    assert Response.model_validate(body).status == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"


def test_render_custom_and_namespaced_calls_back_in_responses_shape() -> None:
    tools = [
        {"type": "custom", "name": "apply_patch"},
        {
            "type": "namespace",
            "name": "git",
            "description": "",
            "tools": [{"type": "function", "name": "log"}],
        },
    ]
    envelope = parse_envelope({"model": "m", "input": "x", "tools": tools})
    calls = [ToolCall("c1", "apply_patch", '{"input":"PATCH"}'), ToolCall("c2", "git__log", "{}")]
    body = render_response(result(tool_calls=calls, finish_reason="tool_calls"), ctx(), envelope)
    Response.model_validate(body)
    custom, namespaced = body["output"]
    assert custom["type"] == "custom_tool_call" and custom["input"] == "PATCH"
    assert namespaced["name"] == "log" and namespaced["namespace"] == "git"
    # ... and those items, replayed by the client, map back to the same tool calls.
    replay = PROTOCOL.parse({"model": "m", "input": body["output"], "tools": tools})
    assert [c["function"]["name"] for c in replay.messages[0]["tool_calls"]] == ["apply_patch", "git__log"]
    assert replay.messages[0]["tool_calls"][0]["function"]["arguments"] == '{"input":"PATCH"}'


def test_previous_response_history_is_prepended_after_system() -> None:
    first = {"model": "m", "input": "My name is Ada.", "instructions": "old"}
    answer = result(text="Hi Ada.", reasoning="greet", reasoning_signature="sig")
    stored = parse_envelope(first).input + output_items(answer, "resp_0")
    second = {
        "model": "m",
        "input": "What is my name?",
        "instructions": "new",
        "previous_response_id": "resp_0",
    }
    request = PROTOCOL.parse(second)
    prepend_history(request, stored)
    assert request.messages == [
        {"role": "system", "content": "new"},
        {"role": "user", "content": "My name is Ada."},
        {
            "role": "assistant",
            "content": "Hi Ada.",
            "reasoning_content": "greet",
            "reasoning_signature": "sig",
        },
        {"role": "user", "content": "What is my name?"},
    ]


def test_error_body_is_the_openai_shape() -> None:
    body = PROTOCOL.error_body(ModelNotFound("no model named 'x'", param="model"))
    assert body == {
        "error": {
            "message": "no model named 'x'",
            "type": "not_found_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


# --------------------------------------------------------------------------- upstream helpers


def test_to_upstream_builds_a_responses_request() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:x"}},
                ],
            },
            {
                "role": "assistant",
                "content": "calling",
                "reasoning_content": "r",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        max_tokens=50,
        temperature=0.1,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
        thinking=Thinking(enabled=True, effort="high"),
        stream=True,
    )
    body = to_upstream(request, "gpt-5")
    assert body["model"] == "gpt-5" and body["instructions"] == "sys" and body["store"] is False
    assert [i["type"] for i in body["input"]] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]
    assert body["input"][0]["content"][1] == {"type": "input_image", "image_url": "data:x", "detail": "auto"}
    assert body["tools"] == [
        {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}
    ]
    assert body["tool_choice"] == {"type": "function", "name": "f"}
    assert body["max_output_tokens"] == 50 and body["temperature"] == 0.1
    assert body["text"] == {"format": {"type": "json_schema", "name": "n", "schema": {}}}
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    # What we send parses back to the same conversation.
    assert PROTOCOL.parse(body).messages[1:] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:x"}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]


def test_from_upstream_reads_a_response() -> None:
    body = render_response(
        result(
            text="hi",
            reasoning="r",
            tool_calls=[ToolCall("c", "f", "{}")],
            finish_reason="tool_calls",
            usage=Usage(3, 4, cached_tokens=1, reasoning_tokens=2),
        ),
        ctx(),
    )
    back = from_upstream(body)
    assert (back.text, back.reasoning, back.finish_reason) == ("hi", "r", "tool_calls")
    assert back.tool_calls == [ToolCall("c", "f", "{}")]
    assert back.usage == Usage(3, 4, cached_tokens=1, reasoning_tokens=2)
    incomplete = {
        **body,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": body["output"][:2],
    }
    assert from_upstream(incomplete).finish_reason == "length"


def test_from_upstream_failed_raises() -> None:
    with pytest.raises(UpstreamRateLimited):
        from_upstream({"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow down"}})


def test_upstream_stream_parser() -> None:
    events = [
        {"type": "response.created", "response": {}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}},
        {"type": "response.reasoning_summary_part.added", "output_index": 0, "summary_index": 0},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "a"},
        {"type": "response.reasoning_summary_part.added", "output_index": 0, "summary_index": 1},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "b"},
        {"type": "response.output_text.delta", "output_index": 1, "delta": "Hi"},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""},
        },
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": '{"x"'},
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": ":1}"},
        {
            "type": "response.output_item.done",
            "output_index": 2,
            "item": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":1}'},
        },
        {
            "type": "response.output_item.added",
            "output_index": 3,
            "item": {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": ""},
        },
        {"type": "response.custom_tool_call_input.delta", "output_index": 3, "delta": "P"},
        {
            "type": "response.output_item.done",
            "output_index": 3,
            "item": {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "P"},
        },
        {
            "type": "response.completed",
            "response": {
                "status": "completed",
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 6,
                    "input_tokens_details": {"cached_tokens": 2},
                    "output_tokens_details": {"reasoning_tokens": 3},
                },
            },
        },
    ]
    parser, acc = UpstreamStreamParser(), Accumulator()
    for event in events:
        for delta in parser.feed(event):
            acc.add(delta)
    answer = acc.result(id="r", model="m", created=0)
    assert answer.reasoning == "a\n\nb" and answer.text == "Hi"
    assert answer.tool_calls == [
        ToolCall("c1", "f", '{"x":1}'),
        ToolCall("c2", "apply_patch", '{"input":"P"}'),
    ]
    assert answer.finish_reason == "tool_calls"
    assert answer.usage == Usage(5, 6, cached_tokens=2, reasoning_tokens=3)
    assert parser.done


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"type": "response.failed", "response": {"error": {"code": "server_error", "message": "x"}}},
            UpstreamError,
        ),
        ({"type": "error", "code": "rate_limit_exceeded", "message": "slow"}, UpstreamRateLimited),
        ({"type": "error", "error": {"code": "invalid_prompt", "message": "bad"}}, UpstreamRejected),
    ],
)
def test_upstream_stream_errors_raise(event: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        UpstreamStreamParser().feed(event)
