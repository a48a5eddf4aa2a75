"""Upstreams that serve the OpenAI Responses API natively (``dialect = "responses"``)."""

from __future__ import annotations

from typing import Any

from oneplan.protocols import responses
from oneplan.protocols.canonical import ChatRequest
from oneplan.providers.base import Preset, ProviderSettings, register
from oneplan.providers.dialect import CodecProvider


@register("responses-compatible")
class ResponsesCompatible(CodecProvider):
    preset = Preset(base_urls={"default": "https://api.openai.com/v1"})
    protocol = responses.PROTOCOL
    path = "/responses"

    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]:
        return {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    def passes_through(self, request: ChatRequest) -> bool:
        # A continued conversation's history lives in oneplan (already in the canonical
        # messages), so only a self-contained request can go as the client sent it.
        return super().passes_through(request) and not (
            request.passthrough is not None and request.passthrough.body.get("previous_response_id")
        )

    def build_body(self, request: ChatRequest, target: Any, *, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, target, stream=stream)
        body["store"] = False  # storage is oneplan's; the upstream keeps nothing
        body.pop("previous_response_id", None)
        return body
