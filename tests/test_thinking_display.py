"""``thinking.display: "omitted"`` (sent by Claude Code): the model still thinks and is metered
for it, but the thinking blocks carry no text, only their signature (Anthropic's documented
behaviour: the block opens, a ``signature_delta`` arrives, no ``thinking_delta``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from oneplan.protocols.anthropic import PROTOCOL
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway
from tests.test_anthropic_gateway import catalog

OMITTED = {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}


@pytest.fixture(params=[("dashscope", "openai", "dashscope"), ("anthropic-compatible", "anthropic", "anthropic")],
                ids=["openai-dialect", "anthropic-dialect"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream]]:
    kind, dialect, fake = request.param
    with FakeUpstream(dialect=fake) as up, Gateway(tmp_path, catalog(up, kind, dialect)) as gw:
        yield gw, up


def test_omitted_thinking_has_no_text_but_a_signature_and_is_metered(setup) -> None:
    gw, up = setup
    c = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    up.reply("The answer is 4.", reasoning="2 plus 2 is 4, a secret chain of thought.")
    msg = c.messages.create(
        model="qwen3.5-plus", max_tokens=4096, thinking=OMITTED, messages=[{"role": "user", "content": "2+2?"}],
    )
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "" and msg.content[0].signature
    assert "secret" not in msg.model_dump_json()

    up.reply("Four.", reasoning="Adding two and two, secretly.")
    deltas = []
    with c.messages.stream(
        model="qwen3.5-plus", max_tokens=4096, thinking=OMITTED, messages=[{"role": "user", "content": "2+2?"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                deltas.append(event.delta.type)
        final = stream.get_final_message()
    assert "thinking_delta" not in deltas and "signature_delta" in deltas
    assert final.content[0].type == "thinking" and final.content[0].thinking == "" and final.content[0].signature
    assert final.content[1].text == "Four."

    # Still metered: the ledger holds what the upstream reported, reasoning included.
    rows = [r for r in gw.ledger() if r["status"] == "ok"]
    assert sum(r["output_tokens"] for r in rows) == up.served_tokens.output_tokens > 0

    # The client sends the block back as it got it (empty text, the signature): accepted.
    up.reply("Yes.")
    c.messages.create(
        model="qwen3.5-plus", max_tokens=4096, thinking=OMITTED,
        messages=[
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {"role": "user", "content": "sure?"},
        ],
    )
    assert len(up.requests) == 3
    # The signature carries the omitted reasoning, sealed: unreadable to the client, and the
    # next turn has it again for upstreams that need reasoning back (Kimi, GLM, MiniMax).
    signature = final.content[0].signature
    assert "secretly" not in signature
    if not signature.startswith("oneplan-sig-"):
        return  # an Anthropic upstream's own signature: it keeps the reasoning itself
    again = PROTOCOL.parse({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": "sure?"},
    ]})
    assert again.messages[1]["reasoning_content"] == "Adding two and two, secretly."


def test_summarized_is_the_default_display(setup) -> None:
    gw, up = setup
    c = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    up.reply("Four.", reasoning="Adding.")
    msg = c.messages.create(
        model="qwen3.5-plus", max_tokens=4096, messages=[{"role": "user", "content": "2+2?"}],
        thinking={"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
    )
    assert msg.content[0].thinking == "Adding."
    with pytest.raises(anthropic.BadRequestError) as raised:
        c.messages.create(
            model="qwen3.5-plus", max_tokens=4096, messages=[{"role": "user", "content": "2+2?"}],
            thinking={"type": "enabled", "budget_tokens": 2048, "display": "loud"},
        )
    assert "thinking.display" in raised.value.message
