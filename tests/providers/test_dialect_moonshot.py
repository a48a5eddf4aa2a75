"""Moonshot Kimi: ``thinking.type``, reasoning sent back on tool-call turns (or the API answers
400), fixed sampling on kimi-k2.5, usage inside ``choices[0]``."""

from __future__ import annotations

import pytest

from oneplan.errors import UpstreamRejected
from oneplan.protocols.canonical import Thinking
from tests.fakes import FakeUpstream
from tests.fakes.harness import collect, make_provider, request, target, wired

pytestmark = pytest.mark.anyio
MODEL = "kimi-k2.5"
CALL = {"id": "get_1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]


def tool_history(reasoning: str | None) -> list[dict[str, object]]:
    assistant: dict[str, object] = {"role": "assistant", "content": "", "tool_calls": [CALL]}
    if reasoning is not None:
        assistant["reasoning_content"] = reasoning
    return [
        {"role": "user", "content": "fetch"},
        assistant,
        {"role": "tool", "tool_call_id": "get_1", "content": "fetched"},
    ]


async def test_thinking_disabled_is_spelled_and_honoured() -> None:
    async with wired("moonshot") as (up, provider):
        up.reply("hi", reasoning="hidden")
        _, result = await collect(provider, request(MODEL, thinking=Thinking(enabled=False)))
    assert up.last.json["thinking"] == {"type": "disabled"}
    assert result.reasoning is None


async def test_default_thinking_streams_reasoning_content() -> None:
    async with wired("moonshot") as (up, provider):
        up.reply("hi", reasoning="kimi thinks by default")
        _, result = await collect(provider, request(MODEL))
    assert "thinking" not in up.last.json
    assert result.reasoning == "kimi thinks by default"


async def test_reasoning_is_sent_back_with_tool_call_turns() -> None:
    async with wired("moonshot") as (up, provider):
        req = request(MODEL, tools=TOOLS)
        req.messages = tool_history("I need to fetch")
        result = await provider.complete(req, target(MODEL))
    assert up.last.json["messages"][1]["reasoning_content"] == "I need to fetch"
    assert result.text


async def test_missing_reasoning_on_a_tool_call_turn_gets_a_placeholder() -> None:
    async with wired("moonshot") as (up, provider):
        req = request(MODEL, tools=TOOLS)
        req.messages = tool_history(None)
        result = await provider.complete(req, target(MODEL))
    assert up.last.json["messages"][1]["reasoning_content"]
    assert result.text


async def test_the_fake_refuses_what_kimi_refuses() -> None:
    """Guards the fake itself: a generic client that drops reasoning gets Kimi's 400."""
    with FakeUpstream("moonshot") as up:
        generic = make_provider("openai-compatible", up)
        req = request(MODEL, tools=TOOLS)
        req.messages = tool_history("dropped by a generic client")
        with pytest.raises(UpstreamRejected) as caught:
            await generic.complete(req, target(MODEL))
        await generic.aclose()
    assert "reasoning_content is missing" in str(caught.value)


async def test_fixed_sampling_parameters_are_not_sent_to_k2_5() -> None:
    async with wired("moonshot") as (up, provider):
        await provider.complete(
            request(MODEL, temperature=0.2, top_p=0.5, presence_penalty=0.1), target(MODEL)
        )
        await provider.complete(
            request("kimi-k2-turbo-preview", temperature=0.2), target("kimi-k2-turbo-preview")
        )
    first, second = up.requests[-2].json, up.requests[-1].json
    assert not {"temperature", "top_p", "presence_penalty"} & set(first)
    assert second["temperature"] == 0.2


async def test_stream_usage_inside_the_choice_with_cached_tokens() -> None:
    async with wired("moonshot") as (up, provider):
        up.reply("cached answer", usage=(300, 2), cached=256)
        _, result = await collect(provider, request(MODEL))
    assert (result.usage.input_tokens, result.usage.output_tokens) == (300, 2)
    assert result.usage.cached_tokens == 256
    assert up.served_tokens.total == 302


def test_preset_endpoints() -> None:
    from oneplan.providers.moonshot import Moonshot

    preset = Moonshot.preset
    assert preset is not None
    assert preset.base_urls["cn"] == "https://api.moonshot.cn/v1"
    assert preset.anthropic_base_urls["default"] == "https://api.moonshot.ai/anthropic"
    assert preset.env_keys == ("MOONSHOT_API_KEY",)
    assert preset.models[:2] == ("kimi-k3", "kimi-k2.7-code")
