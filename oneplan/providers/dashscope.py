"""Alibaba Cloud Model Studio (DashScope) serving Qwen through its OpenAI-compatible mode.

Dialect, as documented by Model Studio ("Deep thinking", "OpenAI compatibility", "Context cache"):

* Hybrid-thinking models switch reasoning per request with ``enable_thinking`` (true/false) and
  cap it with ``thinking_budget`` (tokens). Reasoning arrives in ``reasoning_content``.
* A stream reports usage only when ``stream_options.include_usage`` is set, in one last chunk
  whose ``choices`` is empty; cache hits are ``usage.prompt_tokens_details.cached_tokens`` and
  explicit-cache writes ``prompt_tokens_details.cache_creation_input_tokens`` (also as
  ``cache_creation.ephemeral_5m_input_tokens``, with ``cache_type: "ephemeral"``), both
  inside ``prompt_tokens`` (the "Context cache" page's examples: a 3,019-token prompt
  reports 1,500 created, then 1,500 hit). The OpenAI-compatible parser reads them all.
* Explicit caching is asked for with ``cache_control: {"type": "ephemeral"}`` on a content part,
  the Anthropic spelling, so those hints are kept on the way out.

Regions (keys of ``base_urls``): ``intl`` (Singapore, the default), ``cn`` (Beijing), ``us``
(Virginia), and the Coding Plan endpoints ``coding`` (international) and ``coding-cn``.
"""

from __future__ import annotations

from typing import Any

from oneplan.protocols.canonical import ChatRequest
from oneplan.providers.base import Preset, register
from oneplan.providers.openai_compatible import OpenAICompatible

# What an OpenAI ``reasoning_effort`` becomes when the caller gave no explicit token budget.
# DashScope has no effort knob, only a budget; "high" means the model's own maximum.
EFFORT_BUDGETS = {"minimal": 512, "low": 2048, "medium": 8192}


@register("dashscope")
class DashScope(OpenAICompatible):
    """Qwen on Model Studio. Only the thinking switch and explicit caching differ from OpenAI."""

    preset = Preset(
        base_urls={
            "default": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            "intl": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            "cn": "https://dashscope.aliyuncs.com/compatible-mode/v1",
            "us": "https://dashscope-us.aliyuncs.com/compatible-mode/v1",
            "coding": "https://coding-intl.dashscope.aliyuncs.com/v1",
            "coding-cn": "https://coding.dashscope.aliyuncs.com/v1",
        },
        anthropic_base_urls={
            "default": "https://dashscope-intl.aliyuncs.com/apps/anthropic",
            "intl": "https://dashscope-intl.aliyuncs.com/apps/anthropic",
            "cn": "https://dashscope.aliyuncs.com/apps/anthropic",
            "coding": "https://coding-intl.dashscope.aliyuncs.com/apps/anthropic",
            "coding-cn": "https://coding.dashscope.aliyuncs.com/apps/anthropic",
        },
        env_keys=("DASHSCOPE_API_KEY",),
        # The Qwen models of the Coding Plan's list (Alibaba Model Studio, "Coding Plan", and
        # docs/providers.md for the sources); qwen-flash for the small calls.
        models=(
            "qwen3.7-plus",
            "qwen3.6-plus",
            "qwen3.5-plus",
            "qwen3-coder-next",
            "qwen3-coder-plus",
            "qwen3-max",
            "qwen-flash",
        ),
        small_model="qwen-flash",
    )
    keeps_cache_control = True

    def apply_thinking(self, body: dict[str, Any], request: ChatRequest) -> None:
        """``enable_thinking`` + ``thinking_budget``; nothing at all when the caller left it to
        the model. A caller's own ``enable_thinking`` (passed through ``extra``) wins."""
        thinking = request.thinking
        if thinking.enabled is None:
            return
        body.setdefault("enable_thinking", thinking.enabled)
        if not body["enable_thinking"]:
            body.pop("thinking_budget", None)
            return
        budget = thinking.budget_tokens
        if budget is None and thinking.effort:
            budget = EFFORT_BUDGETS.get(thinking.effort)
        if budget is not None:
            body.setdefault("thinking_budget", int(budget))
