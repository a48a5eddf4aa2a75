"""The official ``openai`` SDK through oneplan to a fake of each preset's dialect: the client
writes one request; each upstream receives it spelled its own way, and the answers come back
the same whatever is behind the name."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import KINDS, UPSTREAM_MODELS, catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# How each dialect was asked to think (what oneplan must have sent upstream).
THINKING_ON = {
    "openai-compatible": lambda b: b.get("reasoning_effort") == "high",
    "dashscope": lambda b: b.get("enable_thinking") is True,
    "zhipu": lambda b: b.get("thinking", {}).get("type") == "enabled",
    "moonshot": lambda b: b.get("thinking", {}).get("type") == "enabled",
    "minimax": lambda b: b.get("reasoning_split") is True,
}
SENDS_REASONING_BACK = {"zhipu", "moonshot", "minimax"}


@pytest.fixture(params=list(KINDS))
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, FakeUpstream, Gateway]]:
    kind = request.param
    with FakeUpstream(dialect=KINDS[kind]) as up, Gateway(
        tmp_path, catalog_for(up, kind, upstream=UPSTREAM_MODELS[kind])
    ) as gw:
        yield kind, up, gw


def test_sync_text_with_reasoning(setup) -> None:
    kind, up, gw = setup
    up.reply("Sunny and 21 degrees.", reasoning="The user wants weather.", usage=(40, 12))
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
    done = client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "weather?"}], reasoning_effort="high", max_tokens=300
    )
    message = done.choices[0].message
    assert message.content == "Sunny and 21 degrees."
    assert message.model_extra["reasoning_content"] == "The user wants weather."
    assert done.usage.prompt_tokens == 40 and done.usage.completion_tokens == 12
    sent = up.requests[-1].json
    assert THINKING_ON[kind](sent), sent
    assert sent["model"] == UPSTREAM_MODELS[kind]
    assert up.requests[-1].headers["authorization"] == f"Bearer {up.api_key}"
    (row,) = gw.ledger()
    assert (row["input_tokens"], row["output_tokens"]) == (40, 12)
    assert row["cost"] == pytest.approx((40 * 2.0 + 12 * 8.0) / 1e6)
    assert row["upstream_model"] == UPSTREAM_MODELS[kind] and row["provider"] == "up"


def test_streamed_tool_call_then_reasoning_sent_back(setup) -> None:
    kind, up, gw = setup
    up.reply(reasoning="Need the tool.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Hangzhou"}}])
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
    stream = client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "weather in Hangzhou?"}],
        tools=[TOOL], stream=True, reasoning_effort="high",
    )
    calls: dict[int, dict] = {}
    reasoning = []
    finish = None
    chunks = list(stream)
    for chunk in chunks:
        assert chunk.usage is None  # the client did not ask for usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        extra = choice.delta.model_extra or {}
        if extra.get("reasoning_content"):
            reasoning.append(extra["reasoning_content"])
        for tc in choice.delta.tool_calls or ():
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
            slot["id"] = tc.id or slot["id"]
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["args"] += (tc.function.arguments or "") if tc.function else ""
    assert finish == "tool_calls"
    assert "".join(reasoning) == "Need the tool."
    (call,) = calls.values()
    assert call["name"] == "get_weather" and json.loads(call["args"]) == {"city": "Hangzhou"} and call["id"]
    sent = up.requests[-1].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}  # metering is exact
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    # Second turn: the assistant's tool call, with its reasoning, and the tool's result.
    up.reply("21 degrees in Hangzhou.")
    client.chat.completions.create(
        model="m1", tools=[TOOL], reasoning_effort="high",
        messages=[
            {"role": "user", "content": "weather in Hangzhou?"},
            {"role": "assistant", "content": None, "reasoning_content": "Need the tool.",
             "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "get_weather", "arguments": call["args"]}}]},
            {"role": "tool", "tool_call_id": call["id"], "content": "21C"},
        ],
    )
    sent_messages = up.requests[-1].json["messages"]
    assistant = sent_messages[1]
    assert assistant["tool_calls"][0]["id"] == call["id"]
    assert sent_messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": "21C"}
    carried = json.dumps(assistant)
    if kind in SENDS_REASONING_BACK:
        assert "Need the tool." in carried  # Kimi, GLM and MiniMax want it back
    else:
        assert "Need the tool." not in carried
    rows = gw.ledger()
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["output_tokens"] > 0


def test_async_stream_with_usage_matches_the_ledger(setup) -> None:
    kind, up, gw = setup
    up.reply("One two three.", usage=(21, 7), cached=5)

    async def run() -> tuple[str, object]:
        client = openai.AsyncOpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        stream = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "count"}], stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        await client.close()
        return "".join(text), usage

    text, usage = asyncio.run(run())
    assert text == "One two three."
    assert usage.prompt_tokens == 21 and usage.completion_tokens == 7
    (row,) = gw.ledger()
    assert (row["input_tokens"], row["output_tokens"]) == (21, 7)
    if kind != "minimax":  # MiniMax does not report cache hits in the OpenAI dialect
        assert usage.prompt_tokens_details.cached_tokens == 5 and row["cached_tokens"] == 5
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]


def test_thinking_off_reaches_the_upstream_and_no_reasoning_comes_back(setup) -> None:
    kind, up, gw = setup
    up.reply("Plain.", reasoning="should not appear")
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
    done = client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}], reasoning_effort="none"
    )
    sent = up.requests[-1].json
    if kind == "minimax":  # M2.x always thinks; oneplan cannot switch it off
        return
    assert not (done.choices[0].message.model_extra or {}).get("reasoning_content")
    assert not THINKING_ON[kind](sent)
