"""MiniMax: ``reasoning_split`` and ``reasoning_details``, inline ``<think>`` split out of the
content (streaming-safe), the whole turn sent back, ``base_resp`` errors."""

from __future__ import annotations

import pytest

from oneplan.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected
from tests.fakes.harness import collect, request, target, wired

pytestmark = pytest.mark.anyio
MODEL = "MiniMax-M2.5"
CALL = {"id": "call_9", "type": "function", "function": {"name": "ls", "arguments": "{}"}}


@pytest.mark.parametrize("streamed", [False, True])
async def test_reasoning_split_brings_reasoning_details(streamed: bool) -> None:
    async with wired("minimax") as (up, provider):
        up.reply("The answer is 4.", reasoning="2 plus 2 is 4", usage=(12, 9))
        if streamed:
            _, result = await collect(provider, request(MODEL, max_tokens=100))
        else:
            result = await provider.complete(request(MODEL, max_tokens=100), target(MODEL))
    body = up.last.json
    assert body["reasoning_split"] is True
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body
    assert result.reasoning == "2 plus 2 is 4"
    assert result.text == "The answer is 4."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 9)


@pytest.mark.parametrize("streamed", [False, True])
async def test_inline_think_tags_are_split_out_when_not_using_reasoning_split(
    streamed: bool,
) -> None:
    async with wired("minimax", reasoning_split=False) as (up, provider):
        up.reply("Final: <b>yes</b>", reasoning="weighing <options> carefully")
        if streamed:
            deltas, result = await collect(provider, request(MODEL))
            assert not any("<think>" in (d.text or "") for d in deltas)
        else:
            result = await provider.complete(request(MODEL), target(MODEL))
    assert "reasoning_split" not in up.last.json
    assert result.reasoning == "\nweighing <options> carefully\n"
    assert result.text == "Final: <b>yes</b>"


async def test_whole_turn_goes_back_as_reasoning_details() -> None:
    async with wired("minimax") as (up, provider):
        req = request(MODEL)
        req.messages = [
            {"role": "user", "content": "list"},
            {"role": "assistant", "content": None, "reasoning_content": "use ls", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_9", "content": "a b"},
        ]
        await provider.complete(req, target(MODEL))
    sent = up.last.json["messages"][1]
    assert "reasoning_content" not in sent
    assert sent["reasoning_details"][0]["text"] == "use ls"
    assert sent["reasoning_details"][0]["type"] == "reasoning.text"
    assert sent["tool_calls"] == [CALL]


async def test_whole_turn_goes_back_inline_without_reasoning_split() -> None:
    async with wired("minimax", reasoning_split=False) as (up, provider):
        req = request(MODEL)
        req.messages = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "r"},
            {"role": "user", "content": "q2"},
        ]
        await provider.complete(req, target(MODEL))
    sent = up.last.json["messages"][1]
    assert sent["content"] == "<think>\nr\n</think>\n\na"
    assert "reasoning_details" not in sent


@pytest.mark.parametrize("streamed", [False, True])
async def test_base_resp_rate_limit_inside_a_200(streamed: bool) -> None:
    async with wired("minimax") as (up, provider):
        up.fault("error_in_200", status=429)
        with pytest.raises(UpstreamRateLimited):
            if streamed:
                await collect(provider, request(MODEL))
            else:
                await provider.complete(request(MODEL), target(MODEL))


async def test_base_resp_invalid_params_is_rejected() -> None:
    async with wired("minimax") as (up, provider):
        up.fault("error_in_200", status=400, message="invalid params, messages empty")
        with pytest.raises(UpstreamRejected) as caught:
            await provider.complete(request(MODEL), target(MODEL))
    assert "messages empty" in str(caught.value)


async def test_base_resp_auth_failure_is_not_the_callers_fault() -> None:
    async with wired("minimax") as (up, provider):
        up.fault("error_in_200", status=401)
        with pytest.raises(UpstreamError) as caught:
            await provider.complete(request(MODEL), target(MODEL))
    assert caught.value.upstream_status == 401
    assert not isinstance(caught.value, UpstreamRejected)


def test_preset_endpoints() -> None:
    from oneplan.providers.minimax import MiniMax

    preset = MiniMax.preset
    assert preset is not None
    assert preset.base_urls["cn"] == "https://api.minimaxi.com/v1"
    assert preset.anthropic_base_urls["default"] == "https://api.minimax.io/anthropic"
    assert preset.env_keys == ("MINIMAX_API_KEY",)
    assert "MiniMax-M2.5" in preset.models
