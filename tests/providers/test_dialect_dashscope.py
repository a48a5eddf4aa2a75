"""DashScope (Qwen): ``enable_thinking`` / ``thinking_budget``, usage only when asked, explicit
cache hints kept, cache reads and writes metered."""

from __future__ import annotations

import pytest

from oneplan.protocols.canonical import Thinking
from tests.fakes.harness import collect, request, target, wired

pytestmark = pytest.mark.anyio
MODEL = "qwen3.5-plus"


async def test_thinking_on_is_spelled_enable_thinking_and_reasoning_comes_back() -> None:
    async with wired("dashscope") as (up, provider):
        up.reply("42", reasoning="six times seven")
        _, result = await collect(provider, request("qwen-plus", thinking=Thinking(enabled=True)))
    assert up.last.json["enable_thinking"] is True
    assert "thinking_budget" not in up.last.json
    assert result.reasoning == "six times seven"
    assert result.text == "42"


async def test_thinking_off_sends_false_and_no_reasoning_arrives() -> None:
    async with wired("dashscope") as (up, provider):
        up.reply("42", reasoning="should not be seen")
        result = await provider.complete(request(MODEL, thinking=Thinking(enabled=False)), target(MODEL))
    assert up.last.json["enable_thinking"] is False
    assert result.reasoning is None


async def test_provider_default_sends_no_switch() -> None:
    async with wired("dashscope") as (up, provider):
        up.reply("ok", reasoning="qwen3.5 thinks by default")
        result = await provider.complete(request(MODEL), target(MODEL))
    assert "enable_thinking" not in up.last.json
    assert result.reasoning == "qwen3.5 thinks by default"


@pytest.mark.parametrize(
    ("thinking", "budget"),
    [
        (Thinking(enabled=True, budget_tokens=3000), 3000),
        (Thinking(enabled=True, effort="low"), 2048),
        (Thinking(enabled=True, effort="high"), None),
    ],
)
async def test_budget_and_effort_become_thinking_budget(thinking: Thinking, budget: int | None) -> None:
    async with wired("dashscope") as (up, provider):
        await provider.complete(request(MODEL, thinking=thinking), target(MODEL))
    assert up.last.json.get("thinking_budget") == budget


async def test_reasoning_is_capped_by_the_budget_the_upstream_received() -> None:
    async with wired("dashscope") as (up, provider):
        up.reply("done", reasoning="one two three four five six")
        _, result = await collect(provider, request(MODEL, thinking=Thinking(enabled=True, budget_tokens=2)))
    assert result.reasoning == "one two "


async def test_explicit_cache_control_is_kept_and_cache_usage_is_metered() -> None:
    parts = [
        {"type": "text", "text": "a long system prompt", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "question"},
    ]
    async with wired("dashscope") as (up, provider):
        up.reply("answer", usage=(1000, 2), cached=800)
        req = request(MODEL)
        req.messages = [{"role": "user", "content": parts}]
        _, result = await collect(provider, req)
    assert up.last.json["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert result.usage.cached_tokens == 800
    assert result.usage.input_tokens == 1000


def test_cache_writes_are_read_from_prompt_tokens_details() -> None:
    from oneplan.providers.base import ProviderSettings
    from oneplan.providers.dashscope import DashScope

    provider = DashScope(ProviderSettings(name="d", kind="dashscope", base_url="http://x/v1"))
    usage = provider.parse_usage(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_input_tokens": 1100},
        }
    )
    assert usage is not None
    assert (usage.cache_write_tokens, usage.cached_tokens) == (1100, 0)


async def test_reasoning_of_earlier_turns_is_not_sent_back() -> None:
    async with wired("dashscope") as (up, provider):
        req = request(MODEL)
        req.messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning_content": "greet back"},
            {"role": "user", "content": "again"},
        ]
        await provider.complete(req, target(MODEL))
    assert "reasoning_content" not in up.last.json["messages"][1]


def test_preset_declares_regions_coding_plan_and_anthropic_endpoints() -> None:
    from oneplan.providers.dashscope import DashScope

    preset = DashScope.preset
    assert preset is not None
    assert preset.base_urls["default"].endswith("/compatible-mode/v1")
    assert {"intl", "cn", "us", "coding", "coding-cn"} <= set(preset.base_urls)
    assert all(url.endswith("/apps/anthropic") for url in preset.anthropic_base_urls.values())
    assert "qwen3.5-plus" in preset.models
    assert preset.env_keys == ("DASHSCOPE_API_KEY",)
