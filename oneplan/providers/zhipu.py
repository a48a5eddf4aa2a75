"""Zhipu GLM, on Z.ai (international) and BigModel (open.bigmodel.cn), OpenAI-style dialect.

Dialect, as documented by Z.ai ("Thinking Mode", "Tool Streaming Output", "Chat Completion"):

* ``thinking: {"type": "enabled" | "disabled"}``; GLM-4.7 and GLM-5 think by default, GLM-4.6
  decides for itself. ``clear_thinking: false`` inside it keeps (preserves) the reasoning of
  earlier turns in context - the recommended setting for agents; the operator turns it on with
  the provider option ``preserved_thinking = true``.
* Reasoning arrives in ``reasoning_content``; with interleaved thinking the earlier turns'
  ``reasoning_content`` is sent back alongside the tool results.
* ``tool_stream: true`` (GLM-4.6 and later) streams tool-call arguments piece by piece; without
  it a tool call arrives whole in one chunk.
* The stream's last chunk carries ``finish_reason`` and ``usage`` (cache hits in
  ``prompt_tokens_details.cached_tokens``). ``finish_reason`` may be ``sensitive`` (content
  filtered) or ``network_error`` (the model failed mid-answer: an error, never a clean stop).
* Errors: ``{"error": {"code": "1302", "message": "..."}}`` with the HTTP status.

Regions: ``intl`` (api.z.ai, the default), ``cn`` (open.bigmodel.cn) and the GLM Coding Plan
endpoints ``coding`` / ``coding-cn``.
"""

from __future__ import annotations

import re
from typing import Any

from oneplan.errors import UpstreamUnavailable
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta
from oneplan.providers.base import Preset, Target, register
from oneplan.providers.openai_compatible import OpenAICompatible

# Models that understand ``tool_stream``: GLM-4.6, 4.7, 5 and later.
_TOOL_STREAM_MODELS = re.compile(r"^glm-(4\.[6-9]|[5-9])", re.IGNORECASE)
# Models that always think and answer 400 to ``thinking: {"type": "disabled"}`` (GLM-5.3).
_ALWAYS_THINKS = re.compile(r"^glm-5\.[3-9]", re.IGNORECASE)


@register("zhipu")
class Zhipu(OpenAICompatible):
    preset = Preset(
        base_urls={
            "default": "https://api.z.ai/api/paas/v4",
            "intl": "https://api.z.ai/api/paas/v4",
            "cn": "https://open.bigmodel.cn/api/paas/v4",
            "coding": "https://api.z.ai/api/coding/paas/v4",
            "coding-cn": "https://open.bigmodel.cn/api/coding/paas/v4",
        },
        anthropic_base_urls={
            "default": "https://api.z.ai/api/anthropic",
            "intl": "https://api.z.ai/api/anthropic",
            "cn": "https://open.bigmodel.cn/api/anthropic",
            "coding": "https://api.z.ai/api/anthropic",
            "coding-cn": "https://open.bigmodel.cn/api/anthropic",
        },
        env_keys=("ZAI_API_KEY", "ZHIPUAI_API_KEY"),
        models=("glm-5.3", "glm-5", "glm-4.7", "glm-4.5-air"),
        small_model="glm-4.5-air",
    )
    sends_reasoning_back = True

    def build_body(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, target, stream=stream)
        wants_tool_stream = self.settings.options.get("tool_stream")
        if wants_tool_stream is None:
            wants_tool_stream = bool(_TOOL_STREAM_MODELS.match(target.upstream))
        if stream and request.tools and wants_tool_stream:
            body.setdefault("tool_stream", True)
        return body

    def apply_thinking(self, body: dict[str, Any], request: ChatRequest) -> None:
        """GLM has no effort or budget: any request for reasoning is ``enabled``."""
        if "thinking" in body:  # the caller spelled it the GLM way already
            return
        enabled = request.thinking.enabled
        preserve = bool(self.settings.options.get("preserved_thinking"))
        if enabled is False and _ALWAYS_THINKS.match(str(body.get("model", ""))):
            return  # GLM-5.3 always thinks: ``disabled`` is a 400
        if enabled is False:
            body["thinking"] = {"type": "disabled"}
        elif enabled or preserve:
            body["thinking"] = {"type": "enabled"}
            if preserve:
                body["thinking"]["clear_thinking"] = False

    def parse_chunk(self, obj: dict[str, Any]) -> Delta | None:
        _raise_on_network_error(obj, self.name)
        return super().parse_chunk(obj)

    def parse_response(self, obj: dict[str, Any], target: Target) -> ChatResult:
        _raise_on_network_error(obj, self.name)
        return super().parse_response(obj, target)


def _raise_on_network_error(obj: dict[str, Any], name: str) -> None:
    """``network_error`` means the answer broke off inside Zhipu: retry, never bill a stop."""
    for choice in obj.get("choices") or ():
        if isinstance(choice, dict) and choice.get("finish_reason") == "network_error":
            raise UpstreamUnavailable(f"{name}: the model failed mid-answer (network_error)")
