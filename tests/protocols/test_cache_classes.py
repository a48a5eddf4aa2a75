"""Token classes and cache hints in the codecs, as pure functions: Anthropic usage in and out
(the lifetime split included), streams whose usage arrives in pieces, and which ``cache_control``
markers each outbound codec keeps."""

from __future__ import annotations

from typing import Any

import pytest

from oneplan.errors import ConfigError
from oneplan.protocols import anthropic
from oneplan.protocols.anthropic.render import wire_usage
from oneplan.protocols.anthropic.upstream import UsageMeter, to_upstream, usage_from_anthropic
from oneplan.protocols.canonical import Usage
from oneplan.providers.anthropic_compatible import AnthropicCompatible
from oneplan.providers.base import ProviderSettings, Target
from oneplan.providers.dashscope import DashScope
from oneplan.providers.openai_compatible import OpenAICompatible

EPHEMERAL = {"type": "ephemeral"}


def test_anthropic_usage_excludes_the_cache_counts_and_splits_writes_by_lifetime() -> None:
    usage = usage_from_anthropic({
        "input_tokens": 21, "output_tokens": 393, "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
    })
    assert usage == Usage(input_tokens=1521, output_tokens=393, cached_tokens=1000, cache_write_tokens=500,
                          cache_write_1h_tokens=300)
    assert (usage.uncached_input_tokens, usage.cache_write_5m_tokens) == (21, 200)
    # Back out the same way, split included.
    assert wire_usage(usage) == {
        "input_tokens": 21, "output_tokens": 393, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
    }
    # MiniMax's documented answer: no split object, every write a 5-minute one.
    minimax = usage_from_anthropic(
        {"cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0, "input_tokens": 21, "output_tokens": 393}
    )
    assert (minimax.input_tokens, minimax.cache_write_tokens, minimax.cache_write_1h_tokens) == (188107, 188086, 0)
    assert "cache_creation" not in wire_usage(minimax)


def test_a_stream_keeps_the_split_from_message_start_when_message_delta_updates_counts() -> None:
    meter = UsageMeter()
    meter.feed({"type": "message_start", "message": {"id": "m", "usage": {
        "input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 40,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 40}}}})
    meter.feed({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}})
    assert meter.usage == Usage(input_tokens=50, output_tokens=7, cache_write_tokens=40, cache_write_1h_tokens=40)


def request(**extra: Any) -> Any:
    body = {
        "model": "claude", "max_tokens": 100,
        "system": [{"type": "text", "text": "sys", "cache_control": EPHEMERAL}],
        "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"cache_control": {"type": "string"}}},
                   "cache_control": EPHEMERAL}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": EPHEMERAL}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r", "cache_control": EPHEMERAL}]},
        ],
        **extra,
    }
    return anthropic.PROTOCOL.parse(body)


def test_anthropic_upstream_gets_every_marker_back() -> None:
    body = to_upstream(request(), "m")
    assert body["system"] == [{"type": "text", "text": "sys", "cache_control": EPHEMERAL}]
    assert body["tools"][0]["cache_control"] == EPHEMERAL
    assert body["messages"][0]["content"][1]["cache_control"] == EPHEMERAL
    assert body["messages"][-1]["content"][0]["content"][0]["cache_control"] == EPHEMERAL


def settings(kind: str, **options: Any) -> ProviderSettings:
    return ProviderSettings(name="p", kind=kind, base_url="http://127.0.0.1:9", options=options)


def test_an_anthropic_compatible_upstream_that_refuses_markers_gets_none() -> None:
    provider = AnthropicCompatible(settings("anthropic-compatible", cache_control=False))
    req = request()
    req.passthrough = None
    body = provider.build_body(req, Target("m", "m"), stream=False)
    assert "cache_control" not in repr({k: v for k, v in body.items() if k != "tools"})
    assert "cache_control" not in body["tools"][0]
    # A tool's input schema is the tool's business, whatever its properties are called.
    assert "cache_control" in body["tools"][0]["input_schema"]["properties"]
    with pytest.raises(ConfigError, match="cache_control"):
        AnthropicCompatible(settings("anthropic-compatible", cache_control="no"))


def test_chat_completions_upstreams_keep_markers_only_where_they_cache_explicitly() -> None:
    target = Target("m", "m")
    generic = OpenAICompatible(settings("openai-compatible")).build_body(request(), target, stream=False)
    assert "cache_control" not in repr(generic["messages"]) and "cache_control" not in generic["tools"][0]
    dashscope = DashScope(settings("dashscope")).build_body(request(), target, stream=False)
    assert dashscope["messages"][0]["content"][0]["cache_control"] == EPHEMERAL  # system
    assert dashscope["messages"][1]["content"] == [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": EPHEMERAL}
    ]
    assert "cache_control" not in dashscope["tools"][0]  # markers go in messages only
    # An operator's endpoint that caches explicitly (a gateway in front of Anthropic) opts in.
    opted = OpenAICompatible(settings("openai-compatible", cache_control=True)).build_body(request(), target, stream=False)
    assert opted["messages"][1]["content"][1]["cache_control"] == EPHEMERAL
