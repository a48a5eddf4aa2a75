"""Zhipu GLM: ``thinking.type``, preserved thinking, reasoning sent back, ``tool_stream``,
its own finish reasons."""

from __future__ import annotations

import json

import pytest

from oneplan.errors import UpstreamUnavailable
from oneplan.protocols.canonical import Thinking
from tests.fakes.harness import collect, request, target, wired

pytestmark = pytest.mark.anyio
MODEL = "glm-5"
TOOLS = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(("enabled", "spelled"), [(True, "enabled"), (False, "disabled")])
async def test_thinking_switch_is_spelled_the_glm_way(enabled: bool, spelled: str) -> None:
    async with wired("zhipu") as (up, provider):
        up.reply("ok", reasoning="thought")
        _, result = await collect(provider, request(MODEL, thinking=Thinking(enabled=enabled)))
    assert up.last.json["thinking"] == {"type": spelled}
    assert result.reasoning == ("thought" if enabled else None)


async def test_default_leaves_glm_thinking_on() -> None:
    async with wired("zhipu") as (up, provider):
        up.reply("ok", reasoning="GLM-5 thinks by default")
        result = await provider.complete(request(MODEL), target(MODEL))
    assert "thinking" not in up.last.json
    assert result.reasoning == "GLM-5 thinks by default"


async def test_preserved_thinking_option_sends_clear_thinking_false() -> None:
    async with wired("zhipu", preserved_thinking=True) as (up, provider):
        await provider.complete(request(MODEL), target(MODEL))
    assert up.last.json["thinking"] == {"type": "enabled", "clear_thinking": False}


async def test_reasoning_goes_back_with_the_tool_results() -> None:
    history = [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should run the tool",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "run", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    async with wired("zhipu") as (up, provider):
        req = request(MODEL, tools=TOOLS)
        req.messages = history
        await provider.complete(req, target(MODEL))
    assert up.last.json["messages"][1]["reasoning_content"] == "I should run the tool"


@pytest.mark.parametrize(("model", "tool_stream"), [("glm-4.6", True), ("glm-4.5", False)])
async def test_tool_stream_on_models_that_support_it(model: str, tool_stream: bool) -> None:
    args = {"cmd": "ls -la", "cwd": "/tmp"}
    async with wired("zhipu") as (up, provider):
        up.reply(tool_calls=[{"name": "run", "arguments": args}])
        deltas, result = await collect(provider, request(model, tools=TOOLS))
    assert up.last.json.get("tool_stream", False) is tool_stream
    pieces = [tc.arguments for d in deltas for tc in d.tool_calls or () if tc.arguments]
    assert (len(pieces) > 1) is tool_stream
    assert json.loads(result.tool_calls[0].arguments) == args
    assert result.tool_calls[0].id.startswith("call_")


async def test_sensitive_finish_is_content_filter() -> None:
    async with wired("zhipu") as (up, provider):
        up.reply("partial", finish="sensitive", times=2)
        _, streamed = await collect(provider, request(MODEL))
        whole = await provider.complete(request(MODEL), target(MODEL))
    assert streamed.finish_reason == whole.finish_reason == "content_filter"


@pytest.mark.parametrize("streamed", [False, True])
async def test_network_error_finish_is_an_upstream_failure(streamed: bool) -> None:
    async with wired("zhipu") as (up, provider):
        up.reply("half an answ", finish="network_error")
        with pytest.raises(UpstreamUnavailable):
            if streamed:
                await collect(provider, request(MODEL))
            else:
                await provider.complete(request(MODEL), target(MODEL))


async def test_usage_arrives_without_being_asked_and_includes_cache_hits() -> None:
    async with wired("zhipu") as (up, provider):
        up.reply("x", usage=(50, 1), cached=40)
        _, result = await collect(provider, request(MODEL))
    assert (result.usage.input_tokens, result.usage.cached_tokens) == (50, 40)


def test_preset_endpoints() -> None:
    from oneplan.providers.zhipu import Zhipu

    preset = Zhipu.preset
    assert preset is not None
    assert preset.base_urls["default"] == "https://api.z.ai/api/paas/v4"
    assert preset.base_urls["coding-cn"] == "https://open.bigmodel.cn/api/coding/paas/v4"
    assert preset.anthropic_base_urls["cn"] == "https://open.bigmodel.cn/api/anthropic"
    assert preset.env_keys == ("ZAI_API_KEY", "ZHIPUAI_API_KEY")
    assert "glm-5" in preset.models
