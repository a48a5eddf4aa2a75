"""The official ``openai`` SDK's Responses API through oneplan to a Chat Completions upstream:
stream and non-stream, a function-call loop, stored responses and ``previous_response_id``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream, openai.OpenAI]]:
    with FakeUpstream(dialect="dashscope") as up, Gateway(tmp_path, catalog_for(up, "dashscope", upstream="qwen3.5-plus")) as gw:
        yield gw, up, openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)


def test_non_stream_and_stream_text(setup) -> None:
    gw, up, client = setup
    up.reply("Hello there.", usage=(12, 3))
    response = client.responses.create(
        model="m1", instructions="Be brief.", input="hi", max_output_tokens=100, reasoning={"effort": "none"}
    )
    assert response.status == "completed" and response.output_text == "Hello there."
    assert response.usage.input_tokens == 12 and response.usage.output_tokens == 3
    assert response.model == "m1"
    sent = up.requests[-1].json
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 100 and sent["enable_thinking"] is False

    up.reply("Streamed words.", reasoning="Thinking it over.", usage=(5, 9))
    types = []
    with client.responses.stream(model="m1", input="go", reasoning={"effort": "high"}) as stream:
        for event in stream:
            types.append(event.type)
        final = stream.get_final_response()
    assert final.output_text == "Streamed words."
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in types and "response.output_text.delta" in types
    assert up.requests[-1].json["enable_thinking"] is True
    rows = gw.ledger()
    assert [(r["protocol"], r["status"], r["output_tokens"]) for r in rows] == [("responses", "ok", 3), ("responses", "ok", 9)]


def test_function_call_loop(setup) -> None:
    _gw, up, client = setup
    up.reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    first = client.responses.create(model="m1", input="weather in Paris?", tools=TOOLS)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    sent = up.requests[-1].json
    assert sent["tools"][0]["function"]["name"] == "get_weather"

    up.reply("It is 18C in Paris.")
    second = client.responses.create(
        model="m1", tools=TOOLS,
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C"},
        ],
    )
    assert second.output_text == "It is 18C in Paris."
    messages = up.requests[-1].json["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C"}


def test_streamed_function_call(setup) -> None:
    _gw, up, client = setup
    up.reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    with client.responses.stream(model="m1", input="weather in Oslo?", tools=TOOLS) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert "".join(deltas) == call.arguments and json.loads(call.arguments) == {"city": "Oslo"}


def test_previous_response_id_continues_a_stored_conversation(setup) -> None:
    _gw, up, client = setup
    up.reply("Nice to meet you, Ada.")
    first = client.responses.create(model="m1", input="My name is Ada.", store=True)
    up.reply("Your name is Ada.")
    second = client.responses.create(model="m1", input="What is my name?", previous_response_id=first.id, store=True)
    assert second.output_text == "Your name is Ada."
    assert [m["content"] for m in up.requests[-1].json["messages"]] == [
        "My name is Ada.", "Nice to meet you, Ada.", "What is my name?",
    ]
    up.reply("Still Ada.")
    client.responses.create(model="m1", input="Sure?", previous_response_id=second.id)
    assert len(up.requests[-1].json["messages"]) == 5  # the whole chain
    assert client.responses.retrieve(first.id).output_text == "Nice to meet you, Ada."


def test_stateless_by_default_and_private_per_user(setup) -> None:
    gw, _up, client = setup
    unstored = client.responses.create(model="m1", input="hi")
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="m1", input="again", previous_response_id=unstored.id)
    stored = client.responses.create(model="m1", input="hi", store=True)
    bob = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.create_user("bob", "pro"), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(stored.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="m1", input="steal", previous_response_id=stored.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(stored.id)
    client.responses.delete(stored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(stored.id)


def test_errors_in_openai_shape_and_failed_stream(setup) -> None:
    gw, up, client = setup
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="m1", input=[{"type": "no_such_item"}])
    assert err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="x")
    up.fault("drop_mid_stream", after=3)
    with client.responses.stream(model="m1", input="long answer please") as stream:
        types = [e.type for e in stream]  # the SDK raises or yields response.failed
    assert types[-1] == "response.failed"
    failed = [r for r in gw.ledger() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["weight"] == 0
