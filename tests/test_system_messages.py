"""System messages where clients put them (Claude Code mid-conversation, Codex twice up front),
and where Chat upstreams want them (one, first)."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai

from oneplan.protocols.anthropic import PROTOCOL as ANTHROPIC
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway


def test_anthropic_mid_conversation_system_message_is_accepted() -> None:
    request = ANTHROPIC.parse({
        "model": "m", "max_tokens": 10, "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Reminder: be careful."}]},
            {"role": "assistant", "content": "ok"},
        ],
    })
    assert [m["role"] for m in request.messages] == ["system", "user", "system", "assistant"]


def test_chat_upstreams_get_one_system_message_first(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up, Gateway(tmp_path, catalog_for(up)) as gw:
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        client.messages.create(
            model="m1", max_tokens=50, system="You are terse.",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "Reminder: be careful."},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "again"},
            ],
        )
        sent = up.requests[-1].json["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "user", "assistant", "user"]
        assert sent[2]["content"] == "Reminder: be careful."
        chat = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        chat.chat.completions.create(model="m1", messages=[
            {"role": "system", "content": "one"}, {"role": "developer", "content": "two"},
            {"role": "user", "content": "hi"},
        ])
        assert up.requests[-1].json["messages"] == [
            {"role": "system", "content": "one\n\ntwo"}, {"role": "user", "content": "hi"},
        ]
