"""Providers that speak OpenAI Chat Completions: the generic kind and the base of every preset.

A preset subclasses ``OpenAICompatible`` and overrides only its quirks:

* ``apply_thinking(body, request)`` - how the provider's reasoning switch is spelled;
* ``outgoing_message(message)`` - what an earlier turn must carry back (e.g. reasoning; the
  ``send_reasoning`` provider option turns that on for any endpoint, e.g. vLLM serving a Qwen3
  or Kimi checkpoint, or DeepSeek);
* ``reasoning_of(delta_or_message)`` - where the provider puts reasoning text in its answers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from oneplan.errors import ConfigError, UpstreamUnavailable
from oneplan.protocols.canonical import (
    ChatRequest,
    ChatResult,
    Delta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from oneplan.providers.base import Preset, Provider, ProviderSettings, Target, register
from oneplan.providers.http import HttpTransport, flag_more

# Keys of a canonical message that no OpenAI-dialect provider understands.
_CANONICAL_ONLY = ("reasoning_signature", "is_error")
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "sensitive": "content_filter",  # Zhipu
    "eos": "stop",
    "max_tokens": "length",
}


def _system_first(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One system message, first: Qwen's chat template (vLLM, SGLang, Ollama) and several
    providers refuse any other arrangement. Leading system messages are merged; a system
    message later in the conversation (Claude Code sends them, Codex sends two up front)
    keeps its place as a user message."""
    lead = 0
    while lead < len(messages) and messages[lead].get("role") == "system":
        lead += 1
    if lead <= 1 and not any(m.get("role") == "system" for m in messages[lead:]):
        return messages
    merged = "\n\n".join(_text_of(m.get("content")) for m in messages[:lead])
    out = [{"role": "system", "content": merged}] if lead else []
    for m in messages[lead:]:
        out.append({**m, "role": "user"} if m.get("role") == "system" else m)
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _empty(delta: Delta) -> bool:
    return not (
        delta.text or delta.reasoning or delta.tool_calls or delta.finish_reason
        or delta.usage is not None or delta.reasoning_signature
    )


def _flatten_text(parts: list[Any], *, keep_cache: bool) -> Any:
    """Text-only content as one string (every provider accepts that; several reject arrays on
    text models); otherwise the parts, without ``cache_control`` unless the provider keeps it.

    A provider that caches explicitly (``keep_cache``) gets several parts as they are, marked
    or not: joining them would change an earlier turn's prompt as soon as the client moves its
    breakpoint to a later turn (Claude Code does, every turn), and lose the cached prefix."""
    text_only = all(isinstance(p, dict) and p.get("type") == "text" for p in parts)
    if keep_cache:
        if text_only and len(parts) == 1 and "cache_control" not in parts[0]:
            return str(parts[0].get("text", ""))  # the same prompt as the one-part list
        return parts
    if text_only:
        return "\n\n".join(str(p.get("text", "")) for p in parts)
    if not any(isinstance(p, dict) and "cache_control" in p for p in parts):
        return parts
    return [{k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p for p in parts]


def _flag(value: Any, provider: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"oneplan.toml [providers.{provider}] {key}: must be true or false")


def _without_cache(tool: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tool.items() if k != "cache_control"} if "cache_control" in tool else tool


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value)) if value == value and abs(value) != float("inf") else 0


def _first(*values: Any) -> int:
    """The first non-zero count of several spellings of one count."""
    for value in values:
        if (count := _int(value)):
            return count
    return 0


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
        body: dict[str, Any] = {
            "model": target.upstream,
            "messages": _system_first([self.outgoing_message(m) for m in request.messages]),
        }
        if stream:
            body["stream"] = True
            # Always ask for usage: metering must be exact even if the client did not ask.
            body["stream_options"] = {"include_usage": True}
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        for key in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.stop:
            body["stop"] = request.stop
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.tools:
            # A tool's ``cache_control`` (from an Anthropic client) has no Chat Completions
            # slot: DashScope's explicit cache reads markers in ``messages`` only.
            body["tools"] = [_without_cache(t) for t in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        elif request.tool_choice == "none":
            pass
        if request.extra:
            body.update(request.extra)
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
            flat = _flatten_text(content, keep_cache=self.keeps_cache_control)
            if flat is not content:
                out = dict(out) if out is message else out
                out["content"] = flat
        return out

    # -- answer ----------------------------------------------------------------------------

    def reasoning_of(self, part: dict[str, Any]) -> str | None:
        """Reasoning text in a message or delta: ``reasoning_content`` (DashScope, GLM, Kimi,
        DeepSeek) or ``reasoning`` (vLLM >= 0.10, OpenRouter)."""
        value = part.get("reasoning_content")
        if value is None:
            value = part.get("reasoning")
        return value if isinstance(value, str) and value else None

    def parse_usage(self, raw: Any) -> Usage | None:
        """Chat Completions usage in the canonical classes. ``prompt_tokens`` includes the
        cache reads and writes (the OpenAI convention, which every preset here follows); the
        providers spell the cache counts differently:

        * reads: ``prompt_tokens_details.cached_tokens`` (OpenAI, DashScope, Zhipu, MiniMax),
          ``cached_tokens`` beside ``prompt_tokens`` (Moonshot), ``prompt_cache_hit_tokens``
          (DeepSeek, whose ``prompt_tokens`` is hits plus ``prompt_cache_miss_tokens``),
          ``cache_read_input_tokens`` (Anthropic-style names on some compatible servers);
        * writes: ``prompt_tokens_details.cache_creation_input_tokens`` (DashScope's explicit
          cache, with ``cache_creation.ephemeral_5m_input_tokens``), ``cache_write_tokens``
          (OpenRouter-style), ``cache_creation_input_tokens`` beside ``prompt_tokens``.
        """
        if not isinstance(raw, dict):
            return None
        details = raw.get("prompt_tokens_details")
        details = details if isinstance(details, dict) else {}
        completion_details = raw.get("completion_tokens_details")
        completion_details = completion_details if isinstance(completion_details, dict) else {}
        creation = details.get("cache_creation") or raw.get("cache_creation")
        creation = creation if isinstance(creation, dict) else {}
        prompt = raw.get("prompt_tokens")
        if prompt is None and "prompt_cache_miss_tokens" in raw:  # DeepSeek's two halves
            prompt = _int(raw.get("prompt_cache_hit_tokens")) + _int(raw.get("prompt_cache_miss_tokens"))
        read = _first(
            details.get("cached_tokens"),
            raw.get("cached_tokens"),
            raw.get("prompt_cache_hit_tokens"),
            details.get("cache_read_input_tokens"),
            raw.get("cache_read_input_tokens"),
        )
        write = _first(
            details.get("cache_creation_input_tokens"),
            details.get("cache_write_tokens"),
            raw.get("cache_creation_input_tokens"),
        )
        if not write and creation:
            write = sum(_int(v) for v in creation.values())
        return Usage.from_inclusive(
            _int(prompt),
            _int(raw.get("completion_tokens")),
            read=read,
            write=write,
            write_1h=_int(creation.get("ephemeral_1h_input_tokens")),
            reasoning=_int(completion_details.get("reasoning_tokens")),
        )

    def parse_chunk(self, obj: dict[str, Any]) -> Delta | None:
        choices = obj.get("choices")
        usage = self.parse_usage(obj.get("usage"))
        if not choices:
            return Delta(usage=usage) if usage else None
        choice = choices[0]
        if usage is None and "usage" in choice:  # Moonshot reports it inside the choice
            usage = self.parse_usage(choice.get("usage"))
        delta = choice.get("delta") or {}
        calls = None
        raw_calls = delta.get("tool_calls")
        if raw_calls:
            calls = []
            for position, call in enumerate(raw_calls):
                fn = call.get("function") or {}
                calls.append(
                    ToolCallDelta(
                        index=call.get("index", position),
                        id=call.get("id") or None,
                        name=fn.get("name") or None,
                        arguments=fn.get("arguments") or "",
                    )
                )
        finish = choice.get("finish_reason")
        return Delta(
            text=delta.get("content") or None,
            reasoning=self.reasoning_of(delta),
            tool_calls=calls,
            finish_reason=_FINISH.get(finish, "stop") if finish else None,
            usage=usage,
        )

    def parse_response(self, obj: dict[str, Any], target: Target) -> ChatResult:
        choices = obj.get("choices")
        if not choices:
            raise UpstreamUnavailable(f"{self.name}: the answer has no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        calls = [
            ToolCall(
                id=call.get("id") or f"call_{i}",
                name=(call.get("function") or {}).get("name") or "",
                arguments=(call.get("function") or {}).get("arguments") or "",
            )
            for i, call in enumerate(message.get("tool_calls") or [])
        ]
        finish = choice.get("finish_reason")
        return ChatResult(
            id=str(obj.get("id") or ""),
            model=str(obj.get("model") or target.upstream),
            created=int(obj.get("created") or time.time()),
            text=message.get("content") or None,
            reasoning=self.reasoning_of(message),
            tool_calls=calls,
            finish_reason=_FINISH.get(finish, "stop") if finish else ("tool_calls" if calls else "stop"),
            usage=self.parse_usage(obj.get("usage") or choice.get("usage")) or Usage(),
        )

    # -- calls -----------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, target: Target) -> ChatResult:
        body = self.build_body(request, target, stream=False)
        data = await self.http.post_json(self.url, body, self.headers)
        self.check_body_error(data)
        return self.parse_response(data, target)

    def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        return flag_more(self._events(self.build_body(request, target, stream=True)))

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[tuple[list[Delta], bool]]:
        finished = False
        async with aclosing(self.http.post_sse(self.url, body, self.headers)) as events:
            async for _event, data, more in events:
                if data == b"[DONE]":
                    finished = True
                    break
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamUnavailable(f"{self.name}: malformed JSON in the stream") from None
                delta = None
                if isinstance(obj, dict):
                    self.check_body_error(obj)
                    delta = self.parse_chunk(obj)
                if delta is not None and not _empty(delta):
                    # An empty role-only first chunk is not "the first byte": until real content
                    # arrives, the router may still fail over to another deployment.
                    finished = finished or delta.finish_reason is not None
                    yield [delta], more
                else:
                    yield [], more
        if not finished:
            # The connection closed with neither [DONE] nor a finish reason: the answer was cut
            # short, and must not reach the client looking complete.
            raise UpstreamUnavailable(f"{self.name}: the stream ended before the answer finished")

    def check_body_error(self, obj: dict[str, Any]) -> None:
        """An error reported inside a 200 answer or stream (several providers do this)."""
        err = obj.get("error")
        if err and not obj.get("choices"):
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamUnavailable(f"{self.name}: {self.http.redact(str(message))}")
