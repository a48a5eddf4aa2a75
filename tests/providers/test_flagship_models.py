"""The 2026-12 flagships behave as their providers document, in the fakes and in the presets
(docs/providers.md has the sources): GLM-5.3 and Kimi K3 / K2.7-Code always think and refuse
being told not to; K3 and K2.7-Code fix their sampling and need reasoning back on tool turns;
MiniMax M3 takes ``thinking.type`` adaptive or disabled."""

from __future__ import annotations

import pytest

from oneplan.errors import UpstreamRejected
from oneplan.protocols.canonical import Thinking
from tests.fakes.harness import collect, request, wired

pytestmark = pytest.mark.anyio
CALL = {"id": "get_1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]
HISTORY = [
    {"role": "user", "content": "fetch"},
    {"role": "assistant", "content": "", "tool_calls": [CALL], "reasoning_content": "I need to fetch"},
    {"role": "tool", "tool_call_id": "get_1", "content": "fetched"},
]


async def test_glm_5_3_is_never_told_to_stop_thinking() -> None:
    async with wired("zhipu") as (up, provider):
        up.reply("hi", reasoning="always on")
        _, result = await collect(provider, request("glm-5.3", thinking=Thinking(enabled=False)))
        assert "thinking" not in up.last.json
        assert result.reasoning == "always on"
        # The fake refuses the switch as the real one does (so the test above can fail).
        up.reply("hi")
        with pytest.raises(UpstreamRejected, match="disabling thinking"):
            await collect(provider, request("glm-5.3", extra={"thinking": {"type": "disabled"}}))
        up.reply("hi")
        await collect(provider, request("glm-5", thinking=Thinking(enabled=False)))
        assert up.last.json["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize("model", ["kimi-k3", "kimi-k2.7-code"])
async def test_kimi_k3_and_k2_7_code(model: str) -> None:
    async with wired("moonshot") as (up, provider):
        up.reply("done", reasoning="thinking")
        req = request(model, tools=TOOLS, temperature=0.2, top_p=0.5, thinking=Thinking(enabled=False, effort="medium"))
        req.messages = HISTORY
        await collect(provider, req)
    sent = up.last.json
    assert not {"temperature", "top_p", "n", "thinking"} & set(sent)
    assert sent["messages"][1]["reasoning_content"] == "I need to fetch"
    if model == "kimi-k3":
        assert sent["reasoning_effort"] == "high"  # medium runs as high on K3
    else:
        assert "reasoning_effort" not in sent


async def test_kimi_k2_6_keeps_its_switch() -> None:
    async with wired("moonshot") as (up, provider):
        up.reply("hi")
        await collect(provider, request("kimi-k2.6", thinking=Thinking(enabled=False)))
    assert up.last.json["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize(("enabled", "sent"), [(True, "adaptive"), (False, "disabled"), (None, None)])
async def test_minimax_m3_thinking_is_adaptive_or_disabled(enabled: bool | None, sent: str | None) -> None:
    async with wired("minimax") as (up, provider):
        up.reply("hi", reasoning="m3 thinks")
        _, result = await collect(provider, request("MiniMax-M3", thinking=Thinking(enabled=enabled)))
        assert up.last.json.get("thinking") == ({"type": sent} if sent else None)
        assert (result.reasoning is None) == (enabled is False)
        up.reply("hi")
        with pytest.raises(UpstreamRejected, match="adaptive or disabled"):
            await collect(provider, request("MiniMax-M3", extra={"thinking": {"type": "enabled"}}))
