"""The protocol contract as the server sees it: the registry (names, paths, error shapes by
path, dialects), the pass-through value each parser produces and the edits it owns."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from oneplan.config import ProviderConfig
from oneplan.protocols import anthropic, openai_chat, responses
from oneplan.protocols.base import Passthrough, Serves
from oneplan.protocols.registry import BY_NAME, DIALECTS, PROTOCOLS, for_path


def test_the_registry_names_each_protocol_once_with_its_own_paths_and_ids() -> None:
    assert PROTOCOLS == (openai_chat.PROTOCOL, anthropic.PROTOCOL, responses.PROTOCOL)
    assert list(BY_NAME) == ["openai_chat", "anthropic", "responses"]
    assert [p.id_prefix for p in PROTOCOLS] == ["chatcmpl-", "msg_", "resp_"]
    paths = [e.path for p in PROTOCOLS for e in p.endpoints]
    assert len(paths) == len(set(paths))
    assert {e.path for p in PROTOCOLS for e in p.endpoints if e.serves is Serves.CHAT} == {
        "/v1/chat/completions", "/chat/completions", "/v1/messages", "/v1/responses", "/responses",
    }


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/messages", "anthropic"),
    ("/v1/messages/count_tokens", "anthropic"),
    ("/v1/messagesx", "openai_chat"),
    ("/v1/responses/resp_1", "responses"),
    ("/responses", "responses"),
    ("/v1/chat/completions", "openai_chat"),
    ("/v1/embeddings", "openai_chat"),  # what no protocol claims speaks OpenAI
])
def test_a_paths_failures_speak_the_protocol_that_claims_it(path: str, name: str) -> None:
    assert for_path(path).name == name


def test_provider_dialects_are_the_registrys() -> None:
    assert list(DIALECTS) == ["openai", "anthropic", "responses"]
    assert ProviderConfig(kind="x", dialect="anthropic").dialect == "anthropic"
    with pytest.raises(ValidationError, match='must be "openai", "anthropic" or "responses"'):
        ProviderConfig(kind="x", dialect="gemini")


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 8000, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_the_parser_hands_back_the_body_as_sent_without_copying_it() -> None:
    body = anthropic_body()
    turn = anthropic.PROTOCOL.accept(body)
    assert turn.request.passthrough == Passthrough(anthropic.PROTOCOL, body)
    assert turn.request.passthrough.body is body
    # parse alone (the canonical form only) carries no pass-through
    assert anthropic.PROTOCOL.parse(body).passthrough is None


def test_anthropic_output_limit_keeps_the_thinking_budget_below_it_and_leaves_the_original() -> None:
    body = anthropic_body(thinking={"type": "enabled", "budget_tokens": 6000})
    sent = Passthrough(anthropic.PROTOCOL, body)
    lowered = sent.with_output_limit(3000)
    assert lowered.body["max_tokens"] == 3000 and lowered.body["thinking"] == {"type": "enabled", "budget_tokens": 2999}
    assert "thinking" not in sent.with_output_limit(1000).body  # no budget Anthropic accepts fits
    assert sent.with_output_limit(7000).body["thinking"]["budget_tokens"] == 6000
    assert body == anthropic_body(thinking={"type": "enabled", "budget_tokens": 6000})  # immutable
    assert sent.capped(4096).body["max_tokens"] == 4096


def test_responses_edits_its_own_field_and_caps_only_what_was_asked() -> None:
    body = {"model": "m", "input": "hi"}
    sent = responses.PROTOCOL.accept(body).request.passthrough
    assert sent is not None
    assert sent.capped(100) is sent  # asked for no output size: nothing to cap
    assert sent.with_output_limit(100).body == {"model": "m", "input": "hi", "max_output_tokens": 100}
    assert sent.for_upstream("up-model", stream=True) == {"model": "up-model", "input": "hi", "stream": True}
    assert body == {"model": "m", "input": "hi"}
    # An Anthropic-style thinking budget some Responses-compatible servers take stays below it.
    thinking = sent.replace(thinking={"type": "enabled", "budget_tokens": 5000})
    assert thinking.with_output_limit(3000).body["thinking"] == {"type": "enabled", "budget_tokens": 2999}


def test_chat_completions_has_no_pass_through_edits() -> None:
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    sent = openai_chat.PROTOCOL.accept(body).request.passthrough
    assert sent is not None
    assert sent.with_output_limit(10) is sent and sent.capped(10) is sent


def test_a_responses_turn_says_what_it_continues_and_what_to_keep() -> None:
    turn = responses.PROTOCOL.accept({"model": "m", "input": "more", "previous_response_id": "resp_1", "store": True})
    assert turn.continues == "resp_1"
    assert turn.missing().param == "previous_response_id"
    turn.resume([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]}])
    assert [m["content"] for m in turn.request.messages] == ["first", "more"]
    turn.keep(False)  # the operator keeps nothing
    assert not turn.stores
    turn.keep(True)
    assert turn.stores
    assert not openai_chat.PROTOCOL.accept({"model": "m", "messages": [{"role": "user", "content": "x"}]}).stores
