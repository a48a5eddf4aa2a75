"""The official ``anthropic`` SDK through oneplan: to an OpenAI-dialect upstream (translated)
and to an Anthropic-dialect upstream (passed through), asserting what each upstream received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

TOOLS = [
    {
        "name": "write_file",
        "description": "Write a file",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    }
]


def catalog(up: FakeUpstream, kind: str, dialect: str) -> str:
    return f"""
[providers.up]
kind = "{kind}"
dialect = "{dialect}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."qwen3.5-plus"]
provider = "up"
input_price = 1.0
output_price = 2.0

[aliases]
"claude-*" = "qwen3.5-plus"

[plans.pro]
requests_per_5h = 100
"""


@pytest.fixture(params=[("dashscope", "openai", "dashscope"), ("anthropic-compatible", "anthropic", "anthropic")],
                ids=["openai-dialect", "anthropic-dialect"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream, str]]:
    kind, dialect, fake = request.param
    with FakeUpstream(dialect=fake) as up, Gateway(tmp_path, catalog(up, kind, dialect)) as gw:
        yield gw, up, dialect


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_non_stream_and_stream_text(setup) -> None:
    gw, up, dialect = setup
    up.reply("Hello from upstream", usage=(11, 4))
    msg = client(gw).messages.create(
        model="claude-sonnet-4-5", max_tokens=256, system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "hi"}], stop_sequences=["STOP"], extra_body={"temperature": 0.2},
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello from upstream"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 4
    assert msg.model == "qwen3.5-plus"  # the model that actually served it
    assert [b.type for b in msg.content] == ["text"]  # no thinking unless asked for
    sent = up.requests[-1].json
    if dialect == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["stop"] == ["STOP"] and sent["max_tokens"] == 256 and sent["temperature"] == 0.2
        assert sent["enable_thinking"] is False
    else:
        assert sent["system"] == [{"type": "text", "text": "Be brief."}]  # passed through as sent
        assert sent["stop_sequences"] == ["STOP"]
    assert sent["model"] == "qwen3.5-plus"

    up.reply("Streamed answer", usage=(9, 3))
    with client(gw).messages.stream(
        model="qwen3.5-plus", max_tokens=128, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streamed answer"
    assert final.usage.output_tokens == 3
    rows = gw.ledger()
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["protocol"] for r in rows] == ["anthropic", "anthropic"]
    assert rows[1]["output_tokens"] == 3


def test_multi_turn_tool_use_loop(setup) -> None:
    gw, up, dialect = setup
    c = client(gw)
    up.reply(tool_calls=[{"name": "write_file", "arguments": {"path": "a.txt", "content": "hi"}}])
    messages = [{"role": "user", "content": "write a.txt"}]
    with c.messages.stream(model="qwen3.5-plus", max_tokens=512, tools=TOOLS, messages=messages) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "write_file" and call.input == {"path": "a.txt", "content": "hi"}
    sent = up.requests[-1].json
    if dialect == "openai":
        assert sent["tools"][0]["function"]["name"] == "write_file"
        assert sent["tools"][0]["function"]["parameters"]["required"] == ["path", "content"]
    else:
        assert sent["tools"] == TOOLS
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "written"}]},
    ]
    up.reply("Done: a.txt written.")
    final = c.messages.create(model="qwen3.5-plus", max_tokens=512, tools=TOOLS, messages=messages)
    assert final.content[0].text == "Done: a.txt written."
    sent = up.requests[-1].json
    if dialect == "openai":
        assistant, tool = sent["messages"][-2], sent["messages"][-1]
        assert assistant["tool_calls"][0]["id"] == call.id
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == call.input
        assert tool == {"role": "tool", "tool_call_id": call.id, "content": "written"}
    else:
        assert sent["messages"][-1]["content"][0]["tool_use_id"] == call.id


def test_thinking_round_trip(setup) -> None:
    gw, up, dialect = setup
    up.reply("The answer is 4.", reasoning="2 plus 2 is 4.")
    c = client(gw)
    msg = c.messages.create(
        model="qwen3.5-plus", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "2+2?"}],
    )
    thinking = [b for b in msg.content if b.type == "thinking"]
    assert thinking and thinking[0].thinking == "2 plus 2 is 4." and thinking[0].signature
    sent = up.requests[-1].json
    if dialect == "openai":
        assert sent["enable_thinking"] is True  # DashScope's switch
    else:
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # Streamed, the thinking arrives as thinking_delta events before the text.
    up.reply("Four.", reasoning="Adding.")
    kinds = []
    with c.messages.stream(
        model="qwen3.5-plus", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "2+2?"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = stream.get_final_message()
    assert kinds.index("thinking_delta") < kinds.index("text_delta")
    assert final.content[0].type == "thinking" and final.content[0].thinking == "Adding."
    # The earlier turn's thinking goes back on the next turn.
    up.reply("Yes.")
    c.messages.create(
        model="qwen3.5-plus", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {"role": "user", "content": "sure?"},
        ],
    )
    sent = up.requests[-1].json
    if dialect == "anthropic":
        assert sent["messages"][1]["content"][0]["type"] == "thinking"
    assert len(up.requests) == 3


def test_errors_in_anthropic_shape(setup) -> None:
    gw, up, _ = setup
    url = f"{gw.base_url}/v1/messages?beta=true"
    headers = {"x-api-key": gw.key, "anthropic-version": "2023-06-01", "anthropic-beta": "made-up-beta-2099"}
    ok = httpx.post(url, headers=headers, json={"model": "qwen3.5-plus", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    cases = [
        ({"x-api-key": "sk-op-wrong"}, {"model": "qwen3.5-plus", "max_tokens": 5, "messages": []}, 401, "authentication_error"),
        (headers, {"model": "qwen3.5-plus", "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error"),
        (headers, {"model": "nope-1", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 404, "not_found_error"),
    ]
    for h, body, status, kind in cases:
        resp = httpx.post(url, headers=h, json=body)
        assert resp.status_code == status
        assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == kind
    up.fault("529" if _ == "anthropic" else "503", times=20)  # every retry fails too
    with pytest.raises(anthropic.APIStatusError) as err:
        client(gw).messages.create(model="qwen3.5-plus", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code in (503, 529) and err.value.body["type"] == "error"


def test_count_tokens_answers_without_calling_the_upstream(setup) -> None:
    gw, up, _ = setup
    counted = client(gw).messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "hello " * 200}], tools=TOOLS
    )
    assert 200 <= counted.input_tokens <= 1200
    assert up.requests == []
