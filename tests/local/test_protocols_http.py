"""A local checkpoint behind the real gateway, through every inbound protocol: scripted tool
calls in both Qwen formats come back as each protocol's tool calls, thinking as its reasoning.
The model's output is forced with a logits processor; loading, templates, scheduling, parsing
and the HTTP path are the real code. Also ``oneplan serve --local-model PATH``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.local.helpers import Script
from tests.support.gateway import Gateway

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
# The same call in each checkpoint's own format (Qwen3.5's template opens <think> itself).
CALLS = {
    "qwen3": '<think>\nNeed weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", '
    '"arguments": {"city": "Paris", "days": 2}}\n</tool_call>',
    "qwen3_5": "Need weather.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n"
    "Paris\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
}


def catalog(checkpoints: dict[str, Path]) -> str:
    models = "\n".join(
        f'[models."tiny-{arch}"]\nprovider = "local"\npath = "{checkpoints[arch]}"\n' for arch in CALLS
    )
    return f'[providers.local]\nkind = "local"\n{models}\n[plans.default]\nrequests_per_5h = 1000\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("gw"), catalog(checkpoints)) as gw:
        yield gw


def script(gw: Gateway, arch: str, text: str) -> None:
    """Make the served engine for ``tiny-<arch>`` answer ``text``."""
    provider = gw.state.providers["local"]
    entry = gw.state.catalog.models[f"tiny-{arch}"]
    engine: Any = gw.run(provider.engine(gw.state.router.target(entry, entry.deployments[0])))
    engine.processors = lambda request: [Script(engine.tokenizer, text)]


@pytest.mark.parametrize("arch", list(CALLS))
def test_openai_chat_tool_calls_and_reasoning(gateway: Gateway, arch: str) -> None:
    script(gateway, arch, CALLS[arch])
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.key, max_retries=0)
    ask = {"model": f"tiny-{arch}", "messages": [{"role": "user", "content": "Weather in Paris?"}],
           "tools": [WEATHER], "reasoning_effort": "high", "max_tokens": 200}
    whole = client.chat.completions.create(**ask)
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "tool_calls"
    assert message.model_extra["reasoning_content"] == "Need weather."
    (call,) = message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}  # typed by the schema

    args, names, reasoning = "", "", ""
    for chunk in client.chat.completions.create(**ask, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        for tc in delta.tool_calls or ():
            names += tc.function.name or ""
            args += tc.function.arguments or ""
    assert names == "get_weather" and json.loads(args) == {"city": "Paris", "days": 2}
    assert reasoning == "Need weather."


def test_thinking_off_gives_no_reasoning(gateway: Gateway) -> None:
    script(gateway, "qwen3", "Four.")
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.key, max_retries=0)
    done = client.chat.completions.create(
        model="tiny-qwen3", messages=[{"role": "user", "content": "2+2?"}], reasoning_effort="none"
    )
    assert done.choices[0].message.content == "Four."
    assert not (done.choices[0].message.model_extra or {}).get("reasoning_content")


def test_anthropic_messages_on_a_local_model(gateway: Gateway) -> None:
    script(gateway, "qwen3_5", CALLS["qwen3_5"])
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER["function"]["parameters"]}
    with client.messages.stream(
        model="tiny-qwen3_5", max_tokens=300, tools=[tool], thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[1].input == {"city": "Paris", "days": 2}
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_responses_on_a_local_model(gateway: Gateway) -> None:
    script(gateway, "qwen3", "<think>\nHm.\n</think>\n\nBonjour.")
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway.key, max_retries=0)
    response = client.responses.create(model="tiny-qwen3", input="Say hello in French.", reasoning={"effort": "high"})
    assert response.output_text == "Bonjour."
    assert [item.type for item in response.output] == ["reasoning", "message"]
    row = gateway.ledger()[-1]
    assert row["protocol"] == "responses" and row["output_tokens"] == response.usage.output_tokens


def test_serve_local_model_shortcut(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    from tests.support.process import ServeProcess

    config = tmp_path / "oneplan.toml"
    config.write_text("[plans.default]\nrequests_per_5h = 10\n")
    server = ServeProcess(config, tmp_path / "data", "--local-model", str(checkpoints["qwen2"])).start(timeout=120)
    try:
        key = server.cli("users", "create", "alice", "--plan", "default").stdout.strip()
        headers = {"authorization": f"Bearer {key}"}
        name = checkpoints["qwen2"].name
        assert [m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=headers).json()["data"]] == [name]
        done = httpx.post(
            f"{server.url}/v1/chat/completions", headers=headers, timeout=60,
            json={"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        ).json()
        assert done["usage"]["completion_tokens"] == 3
    finally:
        server.stop()


def test_a_missing_checkpoint_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    from tests.support.process import oneplan_cli

    result = oneplan_cli("serve", "--data-dir", str(tmp_path / "d"), "--local-model", str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert str(tmp_path / "nowhere") in result.stdout + result.stderr


def test_count_tokens_uses_the_checkpoints_own_tokenizer(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    text = "hello world " * 50
    counted = client.messages.count_tokens(model="tiny-qwen3", messages=[{"role": "user", "content": text}])
    provider = gateway.state.providers["local"]
    entry = gateway.state.catalog.models["tiny-qwen3"]
    engine: Any = gateway.run(provider.engine(gateway.state.router.target(entry, entry.deployments[0])))
    exact = len(engine.tokenizer.encode(text, add_special_tokens=False))
    assert exact <= counted.input_tokens <= exact + 20  # the text's tokens plus message overhead
