"""Anthropic Messages upstreams: Anthropic itself, and the Anthropic-compatible endpoints of
DashScope (``/apps/anthropic``), Zhipu (``/api/anthropic``), Kimi and MiniMax.

Any provider whose catalog entry says ``dialect = "anthropic"`` is served by this class, at its
preset's Anthropic base URL.

Anthropic ``cache_control`` markers (on system, message and tool blocks) are forwarded: Anthropic,
DashScope's and MiniMax's Anthropic endpoints cache explicitly with them, and the others accept
and ignore them (Kimi Code). ``cache_control = false`` in the provider's options strips them
for a compatible server that refuses them.
"""

from __future__ import annotations

from typing import Any

from oneplan.errors import ConfigError
from oneplan.protocols import anthropic
from oneplan.protocols.canonical import ChatRequest
from oneplan.providers.base import Preset, ProviderSettings, Target, register
from oneplan.providers.dialect import CodecProvider

ANTHROPIC_VERSION = "2023-06-01"


@register("anthropic-compatible")
class AnthropicCompatible(CodecProvider):
    preset = Preset(base_urls={"default": "https://api.anthropic.com"})
    protocol = anthropic.PROTOCOL
    path = "/v1/messages"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        keep = settings.options.get("cache_control", True)
        if not isinstance(keep, bool):
            raise ConfigError(f"oneplan.toml [providers.{settings.name}] cache_control: must be true or false")
        self.keeps_cache_control = keep

    def build_body(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, target, stream=stream)
        return body if self.keeps_cache_control else _without_cache(body)

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if settings.api_key:
            # Anthropic reads x-api-key; the compatible endpoints of DashScope, Zhipu, Kimi and
            # MiniMax document a bearer token (ANTHROPIC_AUTH_TOKEN). Both are sent.
            headers["x-api-key"] = settings.api_key
            headers["authorization"] = f"Bearer {settings.api_key}"
        return headers


def _without_cache(body: dict[str, Any]) -> dict[str, Any]:
    """The body without ``cache_control`` on its system, message (and tool result) and tool
    blocks; a tool's input schema is left as it is, whatever its properties are called."""

    def block(b: Any) -> Any:
        if not isinstance(b, dict):
            return b
        out = {k: v for k, v in b.items() if k != "cache_control"}
        if isinstance(out.get("content"), list):  # tool_result blocks hold blocks
            out["content"] = [block(x) for x in out["content"]]
        return out

    out = dict(body)
    if isinstance(out.get("system"), list):
        out["system"] = [block(b) for b in out["system"]]
    if isinstance(out.get("tools"), list):
        out["tools"] = [{k: v for k, v in t.items() if k != "cache_control"} if isinstance(t, dict) else t for t in out["tools"]]
    if isinstance(out.get("messages"), list):
        out["messages"] = [
            {**m, "content": [block(b) for b in m["content"]]}
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            else m
            for m in out["messages"]
        ]
    return out
