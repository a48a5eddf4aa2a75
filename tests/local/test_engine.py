"""Each architecture loads from its directory and answers; scripted thinking and tool calls come
back canonical; concurrent streams share batches; a closed stream stops generating."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from oneplan.errors import InvalidRequest
from oneplan.local.tiny import ARCHITECTURES
from oneplan.protocols.canonical import ChatRequest, Thinking
from tests.local.helpers import collect

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def ask(text: str = "Hello there", **fields: Any) -> ChatRequest:
    return ChatRequest(model="tiny", messages=[{"role": "user", "content": text}], **fields)


def prompt_tokens(engine: Any, request: ChatRequest) -> int:
    """Counted independently: the tokenizer's own template rendering, tokenized."""
    kwargs = {} if request.thinking.enabled is None else {"enable_thinking": request.thinking.enabled}
    text = engine.tokenizer.apply_chat_template(
        request.messages, tools=request.tools, add_generation_prompt=True, tokenize=False, **kwargs
    )
    return len(engine.tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_answers_with_exact_usage(engines: dict[str, Any], arch: str) -> None:
    engine = engines[arch]
    request = ask(max_tokens=7, temperature=0, thinking=Thinking(enabled=False))
    deltas, result = collect(engine, request)
    assert result.finish_reason == "length"
    assert result.usage.input_tokens == prompt_tokens(engine, request)
    assert result.usage.output_tokens == 7
    assert deltas[-1].usage is not None and deltas[-1].finish_reason == "length"
    # Greedy decoding is deterministic: a second run says the same thing.
    assert collect(engine, request)[1].text == result.text


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_scripted_answer_counts_every_token(scripted: Any, arch: str) -> None:
    engine = scripted(arch, "Hello, world!")
    request = ask(thinking=Thinking(enabled=False))
    deltas, result = collect(engine, request)
    assert result.text == "Hello, world!"
    assert result.reasoning is None
    assert result.finish_reason == "stop"
    scripted_tokens = len(engine.tokenizer.encode("Hello, world!", add_special_tokens=False)) + 1
    assert result.usage.output_tokens == scripted_tokens
    assert len([d for d in deltas if d.text]) > 1  # streamed, not one lump


def test_json_tool_call_comes_back_canonical(scripted: Any) -> None:
    engine = scripted(
        "qwen3",
        '<think>\nNeed weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Paris", "days": 2}}\n</tool_call>',
    )
    deltas, result = collect(engine, ask("Weather in Paris?", tools=[WEATHER]))
    assert result.finish_reason == "tool_calls"
    assert result.reasoning == "Need weather."
    assert result.text is None
    (call,) = result.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}
    argument_deltas = [tc for d in deltas for tc in d.tool_calls or [] if tc.arguments]
    assert len(argument_deltas) > 1  # the arguments streamed as they formed
    assert result.usage.reasoning_tokens > 0


def test_xml_tool_call_comes_back_canonical(scripted: Any) -> None:
    # Qwen3.5's template opens <think> in the prompt: the model continues inside it.
    engine = scripted(
        "qwen3_5",
        "Need weather.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
        "Paris\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
    )
    deltas, result = collect(engine, ask("Weather in Paris?", tools=[WEATHER]))
    assert result.finish_reason == "tool_calls"
    assert result.reasoning == "Need weather."
    (call,) = result.tool_calls
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}  # "2" became an integer
    assert sum(1 for d in deltas if d.tool_calls) > 1


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_thinking_on_and_off(scripted: Any, arch: str) -> None:
    opening = "<think>\n" if arch == "qwen3" else ""
    engine = scripted(arch, f"{opening}Let me think.\n</think>\n\nFour.")
    _, thought = collect(engine, ask("2+2?", thinking=Thinking(enabled=True)))
    assert thought.reasoning == "Let me think." and thought.text == "Four."

    engine = scripted(arch, "Four.")
    off = ask("2+2?", thinking=Thinking(enabled=False))
    prepared = engine.prepare(off)
    assert prepared.prompt.endswith("<think>\n\n</think>\n\n")  # the template's own switch
    _, plain = collect(engine, off)
    assert plain.reasoning is None and plain.text == "Four."
    assert plain.usage.reasoning_tokens == 0


def test_tool_results_render_through_the_template(engines: dict[str, Any]) -> None:
    for arch, expected in (("qwen3", '"arguments": {"city": "Oslo"}'), ("qwen3_5", "<parameter=city>\nOslo")):
        request = ChatRequest(
            model="tiny",
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "Call the tool.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
            ],
        )
        prompt = engines[arch].prepare(request).prompt
        assert expected in prompt
        assert "<tool_response>\nsunny, 21C\n</tool_response>" in prompt
        assert "<think>\nCall the tool.\n</think>" in prompt


def test_stop_sequences_cut_the_answer(scripted: Any) -> None:
    engine = scripted("qwen3", "one two three four")
    _, result = collect(engine, ask(stop=[" three"], thinking=Thinking(enabled=False)))
    assert result.text == "one two" and result.finish_reason == "stop"


def test_seeded_sampling_is_reproducible(engines: dict[str, Any]) -> None:
    engine = engines["qwen2"]
    request = ask(max_tokens=12, temperature=1.5, top_p=0.95, seed=7)
    first = collect(engine, request)[1].text
    assert collect(engine, request)[1].text == first
    others = {collect(engine, ask(max_tokens=12, temperature=1.5, seed=s))[1].text for s in range(4)}
    assert len(others) > 1


def test_limits_are_clear_errors(checkpoints: dict[str, Any]) -> None:
    from oneplan.local.engine import EngineOptions, LocalEngine

    engine = LocalEngine.load(EngineOptions(path=str(checkpoints["qwen3"]), context_length=40))
    try:
        with pytest.raises(InvalidRequest, match=r"max_tokens is 100 .* context length is 40"):
            engine.prepare(ask("hi", max_tokens=100))
        with pytest.raises(InvalidRequest, match=r"prompt is .* tokens; this model's context length is 40"):
            engine.prepare(ask("hello " * 40))
        with pytest.raises(InvalidRequest, match="text only"):
            engine.prepare(
                ChatRequest(
                    model="tiny",
                    messages=[
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                    ],
                )
            )
        _, result = collect(engine, ask("hi", thinking=Thinking(enabled=False)))
        assert result.finish_reason == "length"  # no max_tokens: stops at the context's end
        assert result.usage.input_tokens + result.usage.output_tokens == 40
    finally:
        engine.close()


def test_eight_concurrent_streams_are_batched(engines: dict[str, Any]) -> None:
    engine = engines["qwen3_5_text"]
    prompts = [f"Question number {i}: " + "why " * i for i in range(8)]

    async def answer(prompt: str, user: str) -> str | None:
        text = []
        async for delta in engine.stream(ask(prompt, max_tokens=10, temperature=0, tenant=user)):
            text.append(delta.text or "")
        return "".join(text)

    alone = [asyncio.run(answer(p, f"alone-{i}")) for i, p in enumerate(prompts)]
    before = engine.scheduler.decode_batch_sizes.copy()

    async def together() -> list[str | None]:
        with engine.scheduler.paused():
            tasks = [asyncio.create_task(answer(p, f"user-{i}")) for i, p in enumerate(prompts)]
            assert await asyncio.to_thread(engine.scheduler.wait_until, lambda s: s.pending == 8, 30)
        return list(await asyncio.gather(*tasks))

    batched = asyncio.run(together())
    grown = engine.scheduler.decode_batch_sizes - before
    assert grown[8] >= 9  # every decode step ran all eight streams at once
    assert batched == alone  # and batching (left padding, merged caches) changed no answer


def test_closing_the_stream_stops_generation(engines: dict[str, Any]) -> None:
    engine = engines["qwen3"]
    cancelled = engine.scheduler.cancelled

    async def read_a_little() -> int:
        stream = engine.stream(ask(max_tokens=1500, temperature=0))
        async for _ in stream:
            break
        await stream.aclose()  # what the server does when the client disconnects
        seq_count = engine.scheduler.active
        return seq_count

    asyncio.run(read_a_little())
    assert engine.scheduler.wait_until(lambda s: s.idle(), 30)
    assert engine.scheduler.cancelled == cancelled + 1
