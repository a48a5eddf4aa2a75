"""The fakes themselves, checked with the vendors' own SDKs: if the official client parses
what a fake sends, the fake speaks the dialect."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from oneplan.protocols.canonical import Thinking
from tests.fakes import FakeUpstream
from tests.fakes.harness import collect, make_provider, request

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_anthropic_stream_has_signed_thinking_text_and_tool_use() -> None:
    with FakeUpstream("anthropic") as up:
        up.reply("Let me check.", reasoning="need the weather", tool_calls=[WEATHER])
        client = anthropic.Anthropic(base_url=up.base_url, api_key=up.api_key, max_retries=0)
        with client.messages.stream(
            model="qwen3.5-plus",
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "weather in Paris?"}],
        ) as stream:
            message = stream.get_final_message()
        kinds = [block.type for block in message.content]
        assert kinds == ["thinking", "text", "tool_use"]
        thinking, _, tool = message.content
        assert thinking.thinking == "need the weather" and thinking.signature
        assert tool.input == {"city": "Paris"}
        assert message.stop_reason == "tool_use"
        sent = up.last.headers
        assert up.api_key in (sent.get("x-api-key"), sent.get("authorization", "")[7:])

        # the signed block may come back; a forged one may not
        echo = [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}],
            },
        ]
        ok = client.messages.create(
            model="m", max_tokens=4096, messages=echo, thinking={"type": "enabled", "budget_tokens": 2048}
        )
        assert ok.content
        echo[1]["content"][0]["signature"] = "forged"
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="m", max_tokens=4096, messages=echo)


def test_anthropic_errors_are_anthropic_shaped() -> None:
    with FakeUpstream("anthropic") as up:
        client = anthropic.Anthropic(base_url=up.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model="m", max_tokens=10, messages=[])
        assert caught.value.body["error"]["type"] == "authentication_error"
        up.fault("529")
        good = anthropic.Anthropic(base_url=up.base_url, api_key=up.api_key, max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            good.messages.create(model="m", max_tokens=10, messages=[])
        assert overloaded.value.status_code == 529


def test_responses_stream_text_function_call_and_usage() -> None:
    with FakeUpstream("responses") as up:
        up.reply("Calling the tool.", tool_calls=[WEATHER], usage=(40, 11), cached=8)
        client = openai.OpenAI(base_url=up.base_url, api_key=up.api_key, max_retries=0)
        events = list(client.responses.create(model="gpt-5", input="weather?", stream=True))
        final = events[-1].response
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert [e.sequence_number for e in events] == list(range(len(events)))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == final.output_text == "Calling the tool."
        call = next(item for item in final.output if item.type == "function_call")
        assert json.loads(call.arguments) == {"city": "Paris"}
        assert (final.usage.input_tokens, final.usage.output_tokens) == (40, 11)
        assert final.usage.input_tokens_details.cached_tokens == 8
        assert up.served_tokens.total == 51


@pytest.mark.parametrize("dialect", ["openai", "dashscope", "zhipu", "moonshot", "minimax"])
def test_chat_dialects_parse_with_the_openai_sdk(dialect: str) -> None:
    with FakeUpstream(dialect) as up:
        up.reply("hi there", tool_calls=[WEATHER], times=2)
        client = openai.OpenAI(base_url=up.base_url, api_key=up.api_key, max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.endswith("hi there")
        whole = client.chat.completions.create(model="m", messages=[])
        assert whole.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_random_fault_injection_is_seeded_and_repeatable() -> None:
    def outcomes() -> list[int]:
        with FakeUpstream("openai") as up:
            up.fault("503", rate=0.3, seed=42)
            client = openai.OpenAI(base_url=up.base_url, api_key=up.api_key, max_retries=0)
            seen = []
            for _ in range(30):
                try:
                    client.chat.completions.create(model="m", messages=[])
                    seen.append(200)
                except openai.APIStatusError as exc:
                    seen.append(exc.status_code)
            return seen

    first = outcomes()
    assert first == outcomes()
    assert 0 < first.count(503) < 30


def test_unknown_path_and_wrong_key() -> None:
    with FakeUpstream("zhipu") as up:
        client = openai.OpenAI(base_url=up.url + "/v1", api_key=up.api_key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="m", messages=[])
        bad = openai.OpenAI(base_url=up.base_url, api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(model="m", messages=[])
        assert caught.value.body["code"] == "1000"  # Zhipu's own error code


@pytest.mark.anyio
async def test_vllm_style_reasoning_field_and_template_switch() -> None:
    with FakeUpstream("openai") as up:
        provider = make_provider("openai-compatible", up, thinking_template_kwarg=True)
        up.reply("ok", reasoning="vllm puts it in `reasoning`", times=2)
        _, on = await collect(provider, request("qwen3-32b", thinking=Thinking(enabled=True)))
        _, off = await collect(provider, request("qwen3-32b", thinking=Thinking(enabled=False)))
        await provider.aclose()
    assert on.reasoning == "vllm puts it in `reasoning`"
    assert off.reasoning is None
    assert up.last.json["chat_template_kwargs"] == {"enable_thinking": False}
