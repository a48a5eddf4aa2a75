"""Moonshot AI's Kimi, OpenAI-style dialect.

Dialect, as Moonshot documents it ("Using thinking models", "Model parameter reference"; see
docs/providers.md for the sources and how each was checked):

* ``kimi-k3`` and ``kimi-k2.7-code`` (and ``-highspeed``) always think: ``thinking`` disabled is
  a 400, so it is never sent to them; K3 takes ``reasoning_effort`` low / high / max.
  ``kimi-k2.6`` (and ``kimi-k2.5``) think by default and take ``thinking: {"type": "enabled" |
  "disabled"}``; ``kimi-k2-thinking`` always thinks. Reasoning arrives in ``reasoning_content``.
* With thinking on, every earlier assistant message that made tool calls must carry its
  ``reasoning_content``; otherwise the API answers 400 "thinking is enabled but
  reasoning_content is missing in assistant tool call message at index N".
* On these models temperature, top_p, n, presence_penalty and frequency_penalty are fixed:
  sending one is refused, so they are dropped.
* A stream's last chunk carries usage inside ``choices[0].usage``; cache hits are
  ``usage.cached_tokens`` (both read by the OpenAI-compatible parser).

Regions: ``intl`` (api.moonshot.ai, the default), ``cn`` (api.moonshot.cn) and ``coding`` (the
Kimi Code plan at api.kimi.com/coding).
"""

from __future__ import annotations

import re
from typing import Any

from oneplan.protocols.canonical import ChatRequest
from oneplan.providers.base import Preset, Target, register
from oneplan.providers.openai_compatible import OpenAICompatible

# Models whose sampling parameters are fixed and which accept the ``thinking`` switch.
_FIXED_SAMPLING = re.compile(r"^kimi-k[3-9]|^kimi-k2\.[5-9]|^kimi-for-coding", re.IGNORECASE)
_ALWAYS_THINKS = re.compile(r"thinking|^kimi-k[3-9]|^kimi-k2\.7-code", re.IGNORECASE)
# Canonical effort -> K3's reasoning_effort (low | high | max).
_K3_EFFORT = {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "max", "max": "max"}
_FIXED_PARAMS = ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty")
# Stand-in reasoning for a tool-call turn whose reasoning we never saw (another model wrote it,
# or the client dropped it). Non-empty, because an empty string counts as missing.
PLACEHOLDER_REASONING = " "


@register("moonshot")
class Moonshot(OpenAICompatible):
    preset = Preset(
        base_urls={
            "default": "https://api.moonshot.ai/v1",
            "intl": "https://api.moonshot.ai/v1",
            "cn": "https://api.moonshot.cn/v1",
            "coding": "https://api.kimi.com/coding/v1",
        },
        anthropic_base_urls={
            "default": "https://api.moonshot.ai/anthropic",
            "intl": "https://api.moonshot.ai/anthropic",
            "cn": "https://api.moonshot.cn/anthropic",
            "coding": "https://api.kimi.com/coding",
        },
        env_keys=("MOONSHOT_API_KEY",),
        models=("kimi-k3", "kimi-k2.7-code", "kimi-k2.6"),
        small_model="kimi-k2.7-code-highspeed",
    )
    sends_reasoning_back = True

    def build_body(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, target, stream=stream)
        model = target.upstream
        if _FIXED_SAMPLING.match(model):
            for key in _FIXED_PARAMS:
                body.pop(key, None)
        switch = body.get("thinking")
        if _ALWAYS_THINKS.search(model) and isinstance(switch, dict) and switch.get("type") == "disabled":
            del body["thinking"]  # the caller's own switch: K3 and K2.7-Code refuse it
        if self._thinks(body, model):
            body["messages"] = [_with_reasoning(m) for m in body["messages"]]
        return body

    def apply_thinking(self, body: dict[str, Any], request: ChatRequest) -> None:
        """Reasoning on or off where the model has the switch; K3's effort; nothing for a
        model that always thinks (turning it off is a 400)."""
        model = str(body.get("model", ""))
        if _ALWAYS_THINKS.search(model):
            effort = _K3_EFFORT.get(request.thinking.effort or "")
            if effort and re.match(r"^kimi-k[3-9]", model, re.IGNORECASE):
                body.setdefault("reasoning_effort", effort)
            return
        enabled = request.thinking.enabled
        if enabled is None or "thinking" in body:
            return
        body["thinking"] = {"type": "enabled" if enabled else "disabled"}

    def _thinks(self, body: dict[str, Any], model: str) -> bool:
        """Whether Kimi will treat this request as thinking (and so check tool-call turns)."""
        if _ALWAYS_THINKS.search(model):
            return True
        switch = body.get("thinking")
        if isinstance(switch, dict) and switch.get("type") == "disabled":
            return False
        return bool(_FIXED_SAMPLING.match(model)) or isinstance(switch, dict)


def _with_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("role") != "assistant" or not message.get("tool_calls"):
        return message
    if message.get("reasoning_content"):
        return message
    return {**message, "reasoning_content": PLACEHOLDER_REASONING}
