"""What every preset dialect must do against a faithful fake of its provider: answer, stream,
call tools, report exact usage, and turn every failure into the right ``oneplan.errors`` class."""

from __future__ import annotations

import json

import anyio
import pytest

from oneplan.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.fakes.harness import KINDS, SHORT, collect, request, target, wired

pytestmark = pytest.mark.anyio
PRESETS = ["dashscope", "zhipu", "moonshot", "minimax"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize("kind", PRESETS)
async def test_text_answer_with_exact_usage(kind: str) -> None:
    model = KINDS[kind][1]
    async with wired(kind) as (up, provider):
        up.reply("Bonjour tout le monde", usage=(21, 4))
        result = await provider.complete(request(model), target(model))
    assert result.text == "Bonjour tout le monde"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (21, 4)
    assert up.last.json["model"] == model
    assert up.last.headers["authorization"] == f"Bearer {up.api_key}"
    assert up.last.path.endswith("/chat/completions")


@pytest.mark.parametrize("kind", PRESETS)
async def test_stream_assembles_text_and_meters_what_the_upstream_billed(kind: str) -> None:
    model = KINDS[kind][1]
    async with wired(kind) as (up, provider):
        up.reply("one two three four five", usage=(30, 5), cached=12)
        deltas, result = await collect(provider, request(model))
    assert result.text == "one two three four five"
    assert len([d for d in deltas if d.text]) >= 3, "text should arrive over several chunks"
    assert result.finish_reason == "stop"
    assert result.usage.input_tokens == up.served_tokens.input_tokens == 30
    assert result.usage.output_tokens == up.served_tokens.output_tokens == 5
    assert result.usage.cached_tokens == 12
    assert up.last.json["stream"] is True
    assert up.last.json["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", PRESETS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_calls(kind: str, streamed: bool) -> None:
    model = KINDS[kind][1]
    args = {"city": "Hangzhou", "unit": "celsius"}
    async with wired(kind) as (up, provider):
        up.reply(tool_calls=[{"name": "get_weather", "arguments": args, "id": "call_abc"}])
        req = request(model, "weather?", tools=TOOLS, tool_choice="auto")
        if streamed:
            _, result = await collect(provider, req)
        else:
            result = await provider.complete(req, target(model))
    assert up.last.json["tools"] == TOOLS
    assert result.finish_reason == "tool_calls"
    [call] = result.tool_calls
    assert (call.id, call.name) == ("call_abc", "get_weather")
    assert json.loads(call.arguments) == args


@pytest.mark.parametrize("kind", PRESETS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_429_carries_retry_after(kind: str, streamed: bool) -> None:
    model = KINDS[kind][1]
    async with wired(kind) as (up, provider):
        up.fault("429", retry_after=2)
        with pytest.raises(UpstreamRateLimited) as caught:
            if streamed:
                await collect(provider, request(model))
            else:
                await provider.complete(request(model), target(model))
    assert caught.value.retry_after == 2
    assert caught.value.upstream_status == 429


@pytest.mark.parametrize("kind", PRESETS)
@pytest.mark.parametrize("status", ["500", "503"])
async def test_server_errors_are_unavailable(kind: str, status: str) -> None:
    model = KINDS[kind][1]
    async with wired(kind) as (up, provider):
        up.fault(status, times=2)
        with pytest.raises(UpstreamUnavailable):
            await provider.complete(request(model), target(model))
        with pytest.raises(UpstreamUnavailable):
            await collect(provider, request(model))
        # and the provider recovers once the upstream does
        assert (await provider.complete(request(model), target(model))).text


@pytest.mark.parametrize("kind", PRESETS)
async def test_rejected_key_is_not_the_callers_fault(kind: str) -> None:
    model = KINDS[kind][1]
    async with wired(kind, api_key="sk-wrong-key-for-this-upstream") as (_, provider):
        with pytest.raises(UpstreamError) as caught:
            await provider.complete(request(model), target(model))
    assert caught.value.upstream_status == 401
    assert not isinstance(caught.value, UpstreamRejected)
    assert "sk-wrong-key" not in str(caught.value)


@pytest.mark.parametrize("kind", PRESETS)
async def test_bad_request_is_rejected_with_its_status(kind: str) -> None:
    model = KINDS[kind][1]
    async with wired(kind) as (up, provider):
        up.fault("400", message="messages must not be empty")
        with pytest.raises(UpstreamRejected) as caught:
            await provider.complete(request(model), target(model))
    assert caught.value.status == 400
    assert "messages must not be empty" in str(caught.value)


@pytest.mark.parametrize("kind", PRESETS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_hang_times_out_and_the_upstream_request_is_cancelled(kind: str, streamed: bool) -> None:
    model = KINDS[kind][1]
    async with wired(kind, timeouts=SHORT) as (up, provider):
        up.fault("hang")
        with pytest.raises(UpstreamTimeout):
            if streamed:
                await collect(provider, request(model))
            else:
                await provider.complete(request(model), target(model))
        await provider.aclose()
        assert await anyio.to_thread.run_sync(lambda: up.wait_until(lambda: up.cancelled == 1))


@pytest.mark.parametrize("kind", PRESETS)
async def test_stalled_stream_times_out(kind: str) -> None:
    model = KINDS[kind][1]
    async with wired(kind, timeouts=SHORT) as (up, provider):
        up.fault("drip", delay=1.0)
        with pytest.raises(UpstreamTimeout):
            await collect(provider, request(model))


@pytest.mark.parametrize("kind", PRESETS)
async def test_connection_dropped_mid_stream_raises_mid_iteration(kind: str) -> None:
    model = KINDS[kind][1]
    received = []
    async with wired(kind) as (up, provider):
        up.reply("a long answer that will never finish", usage=(10, 8))
        up.fault("drop_mid_stream", after=3)
        with pytest.raises(UpstreamError):
            async for delta in provider.stream(request(model), target(model)):
                received.append(delta)
    assert received, "the error must come after the first deltas, not instead of them"
    assert up.served_tokens.total == 0


@pytest.mark.parametrize("kind", PRESETS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_malformed_json_is_an_upstream_error(kind: str, streamed: bool) -> None:
    model = KINDS[kind][1]
    async with wired(kind) as (up, provider):
        up.fault("malformed_json", after=2)
        with pytest.raises(UpstreamError):
            if streamed:
                await collect(provider, request(model))
            else:
                await provider.complete(request(model), target(model))


@pytest.mark.parametrize("kind", PRESETS)
async def test_hundred_concurrent_streams_are_metered_exactly(kind: str) -> None:
    model = KINDS[kind][1]
    results = []
    async with wired(kind) as (up, provider):
        up.reply("same answer for all", usage=(7, 3), times=100)

        async def one() -> None:
            results.append((await collect(provider, request(model)))[1])

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
    assert len(results) == 100
    assert sum(r.usage.total_tokens for r in results) == up.served_tokens.total == 1000
    assert all(r.text == "same answer for all" for r in results)
