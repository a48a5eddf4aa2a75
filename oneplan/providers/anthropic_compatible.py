"""Anthropic Messages upstreams: Anthropic itself, and the Anthropic-compatible endpoints of
DashScope (``/apps/anthropic``), Zhipu (``/api/anthropic``), Kimi and MiniMax.

Any provider whose catalog entry says ``dialect = "anthropic"`` is served by this class, at its
preset's Anthropic base URL.
"""

from __future__ import annotations

from oneplan.protocols import anthropic_upstream as codec
from oneplan.providers.base import Preset, ProviderSettings, register
from oneplan.providers.dialect import CodecProvider

ANTHROPIC_VERSION = "2023-06-01"


@register("anthropic-compatible")
class AnthropicCompatible(CodecProvider):
    preset = Preset(base_urls={"default": "https://api.anthropic.com"})
    protocol = "anthropic"
    path = "/v1/messages"
    codec = codec

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if settings.api_key:
            # Anthropic reads x-api-key; the compatible endpoints of DashScope, Zhipu, Kimi and
            # MiniMax document a bearer token (ANTHROPIC_AUTH_TOKEN). Both are sent.
            headers["x-api-key"] = settings.api_key
            headers["authorization"] = f"Bearer {settings.api_key}"
        return headers
