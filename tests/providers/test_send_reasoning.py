"""The ``send_reasoning`` option of a generic OpenAI-compatible provider: earlier reasoning goes
back on assistant turns (as Kimi and GLM need, and a vLLM serving a Qwen3 or Kimi checkpoint,
or DeepSeek), under the key the server reads; off by default."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from oneplan.errors import ConfigError
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

THINK = {"type": "enabled", "budget_tokens": 2048}
TOOL = {"name": "ls", "description": "list", "input_schema": {"type": "object", "properties": {}}}


def history() -> list[dict]:
    return [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call ls first.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]},
    ]


@pytest.mark.parametrize(
    ("option", "key"),
    [(None, None), ("true", "reasoning_content"), ('"reasoning_content"', "reasoning_content"),
     ('"reasoning"', "reasoning"), ("false", None)],
)
def test_reasoning_goes_back_only_when_asked(tmp_path: Path, upstream: FakeUpstream, option: str | None, key: str | None) -> None:
    text = catalog_for(upstream, upstream="Qwen/Qwen3-8B")
    if option is not None:
        text = text.replace('api_key = "', f'send_reasoning = {option}\napi_key = "', 1)
    with Gateway(tmp_path, text) as gw:
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        upstream.reply("a.txt is there.")
        client.messages.create(model="m1", max_tokens=1024, thinking=THINK, tools=[TOOL], messages=history())
    (assistant,) = [m for m in upstream.requests[-1].json["messages"] if m["role"] == "assistant"]
    assert assistant["tool_calls"][0]["function"]["name"] == "ls"
    if key is None:
        assert "reasoning_content" not in assistant and "reasoning" not in assistant
    else:
        assert assistant[key] == "I should call ls first."
        assert set(assistant) & {"reasoning_content", "reasoning"} == {key}


def test_a_bad_value_is_a_config_error(tmp_path: Path, upstream: FakeUpstream) -> None:
    text = catalog_for(upstream).replace('api_key = "', 'send_reasoning = "yes"\napi_key = "', 1)
    with pytest.raises(ConfigError, match="send_reasoning"):
        Gateway(tmp_path, text)
