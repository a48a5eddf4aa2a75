"""Providers that speak OpenAI Chat Completions: the generic kind and the base of every preset.

A preset subclasses ``OpenAICompatible`` and overrides only its quirks:

* ``apply_thinking(body, request)`` - how the provider's reasoning switch is spelled;
* ``outgoing_message(message)`` - what an earlier turn must carry back (e.g. reasoning; the
  ``send_reasoning`` provider option turns that on for any endpoint, e.g. vLLM serving a Qwen3
  or Kimi checkpoint, or DeepSeek);
* ``reasoning_of(delta_or_message)`` - where the provider puts reasoning text in its answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from oneplan.errors import ConfigError, UpstreamUnavailable
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta, Usage
from oneplan.protocols.openai_chat import upstream
from oneplan.providers.base import Preset, Provider, ProviderSettings, Target, register
from oneplan.providers.http import HttpTransport, read_deltas

# Keys of a canonical message that no OpenAI-dialect provider understands.
_CANONICAL_ONLY = ("reasoning_signature", "is_error")


def _flag(value: Any, provider: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"oneplan.toml [providers.{provider}] {key}: must be true or false")


def _send_reasoning(option: Any, provider: str) -> tuple[bool, str]:
    """The ``send_reasoning`` provider option: earlier turns' reasoning goes back to the
    upstream (``true`` = as ``reasoning_content``, or the key to use), or not (``false``)."""
    if option is True or option == "reasoning_content":
        return True, "reasoning_content"
    if option == "reasoning":
        return True, "reasoning"
    if option is False:
        return False, "reasoning_content"
    raise ConfigError(
        f"oneplan.toml [providers.{provider}] send_reasoning: must be true, false, "
        '"reasoning_content" or "reasoning"'
    )


@register("openai-compatible")
class OpenAICompatible(Provider):
    """Any endpoint that speaks Chat Completions: vLLM, SGLang, OpenAI itself, gateways."""

    preset = Preset(base_urls={"default": "http://127.0.0.1:8000/v1"})
    max_tokens_field = "max_tokens"
    # Parts of a message content list the provider keeps ``cache_control`` on (explicit caching).
    keeps_cache_control = False
    # Whether an assistant message's ``reasoning_content`` goes back to the provider.
    sends_reasoning_back = False

    # The message key reasoning goes back under (vLLM's Qwen3/Kimi templates and DeepSeek read
    # ``reasoning_content``; some servers ``reasoning``).
    reasoning_field = "reasoning_content"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        cache = settings.options.get("cache_control")
        if cache is not None:  # the operator knows the endpoint takes (or refuses) the hints
            self.keeps_cache_control = _flag(cache, settings.name, "cache_control")
        option = settings.options.get("send_reasoning")
        if option is not None:
            self.sends_reasoning_back, self.reasoning_field = _send_reasoning(option, settings.name)
        self.http = HttpTransport(settings)
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"content-type": "application/json", **settings.headers}
        if settings.api_key:
            self.headers["authorization"] = f"Bearer {settings.api_key}"

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- request ---------------------------------------------------------------------------

    def build_body(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        body = upstream.encode(
            request, target.upstream, stream=stream, max_tokens_field=self.max_tokens_field,
            message=self.outgoing_message,
        )
        self.apply_thinking(body, request)
        return body

    def apply_thinking(self, body: dict[str, Any], request: ChatRequest) -> None:
        """Generic endpoints: pass ``reasoning_effort`` on; vLLM/SGLang-served Qwen and GLM
        read ``chat_template_kwargs.enable_thinking``, which an operator turns on with the
        provider option ``thinking_template_kwarg = true``."""
        thinking = request.thinking
        if thinking.effort and "reasoning_effort" not in body:
            body["reasoning_effort"] = thinking.effort
        if thinking.enabled is not None and self.settings.options.get("thinking_template_kwarg"):
            kwargs = dict(body.get("chat_template_kwargs") or {})
            kwargs.setdefault("enable_thinking", thinking.enabled)
            body["chat_template_kwargs"] = kwargs

    def outgoing_message(self, message: dict[str, Any]) -> dict[str, Any]:
        out = message
        if any(k in message for k in _CANONICAL_ONLY) or (
            "reasoning_content" in message and not self.sends_reasoning_back
        ):
            out = {k: v for k, v in message.items() if k not in _CANONICAL_ONLY}
            if not self.sends_reasoning_back:
                out.pop("reasoning_content", None)
        if self.reasoning_field != "reasoning_content" and "reasoning_content" in out:
            out = {**out}
            out[self.reasoning_field] = out.pop("reasoning_content")
            if message.get("is_error") and isinstance(out.get("content"), str):
                out["content"] = "Error: " + out["content"]
        content = out.get("content")
        if isinstance(content, list):
            flat = upstream.flatten_text(content, keep_cache=self.keeps_cache_control)
            if flat is not content:
                out = dict(out) if out is message else out
                out["content"] = flat
        return out

    # -- answer ----------------------------------------------------------------------------

    def reasoning_of(self, part: dict[str, Any]) -> str | None:
        """Reasoning text in a message or delta (``upstream.reasoning_of``)."""
        return upstream.reasoning_of(part)

    def parse_usage(self, raw: Any) -> Usage | None:
        """Chat Completions usage in the canonical classes (``upstream.parse_usage``)."""
        return upstream.parse_usage(raw)

    def parse_chunk(self, obj: dict[str, Any]) -> Delta | None:
        return upstream.parse_chunk(obj, reasoning_of=self.reasoning_of, usage_of=self.parse_usage)

    def parse_response(self, obj: dict[str, Any], target: Target) -> ChatResult:
        return upstream.parse_response(
            obj, target.upstream, provider=self.name, reasoning_of=self.reasoning_of, usage_of=self.parse_usage
        )

    # -- calls -----------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, target: Target) -> ChatResult:
        body = self.build_body(request, target, stream=False)
        data = await self.http.post_json(self.url, body, self.headers)
        self.check_body_error(data)
        return self.parse_response(data, target)

    def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        return self._events(self.build_body(request, target, stream=True))

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[Delta]:
        """The deltas, one network read at a time (``read_deltas``). A bad event ends the
        stream with an error, after the deltas before it (in its read too)."""
        finished = False
        async with aclosing(self.http.post_sse(self.url, body, self.headers)) as reads:
            async for events in reads:
                read = read_deltas(events, self._deltas)
                for delta in read.deltas:
                    finished = finished or delta.finish_reason is not None
                    yield delta
                if read.error is not None:
                    raise read.error
                if read.done:
                    finished = True
                    break
        if not finished:
            # The connection closed with neither [DONE] nor a finish reason: the answer was cut
            # short, and must not reach the client looking complete.
            raise UpstreamUnavailable(f"{self.name}: the stream ended before the answer finished")

    def _deltas(self, data: bytes) -> list[Delta]:
        """One event's delta, if it holds any. An empty role-only first chunk holds none: it is
        not "the first byte", and until real content arrives the router may still fail over."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{self.name}: malformed JSON in the stream") from None
        if not isinstance(obj, dict):
            return []
        self.check_body_error(obj)
        delta = self.parse_chunk(obj)
        return [] if delta is None or upstream.empty(delta) else [delta]

    def check_body_error(self, obj: dict[str, Any]) -> None:
        """An error reported inside a 200 answer or stream (several providers do this)."""
        err = obj.get("error")
        if err and not obj.get("choices"):
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamUnavailable(f"{self.name}: {self.http.redact(str(message))}")
