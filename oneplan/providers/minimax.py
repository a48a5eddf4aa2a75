"""MiniMax (M2 series), OpenAI-style dialect.

Dialect, as documented by MiniMax ("OpenAI API compatible", "Interleaved thinking", error codes):

* The M2 models always think. By default the reasoning is inline at the start of ``content`` as
  ``<think>...</think>``; with ``reasoning_split: true`` it comes separately in
  ``reasoning_details`` (a list of ``{"type": "reasoning.text", "text": ...}``). oneplan always
  asks for the split form, and still splits inline tags out of ``content`` (streaming-safe) for
  endpoints or models that ignore the switch.
* Interleaved thinking needs the *whole* earlier assistant turn back: in the split form its
  ``reasoning_details``, in the inline form its ``<think>`` block inside ``content``.
* ``max_tokens`` is deprecated in favour of ``max_completion_tokens``.
* Errors may come as HTTP 200 with ``base_resp: {"status_code": N, "status_msg": ...}`` (N != 0),
  as well as with an HTTP error status; both map onto ``oneplan.errors``.

Regions: ``intl`` (api.minimax.io, the default) and ``cn`` (api.minimaxi.com). The Coding Plan
uses the same endpoints with a plan key.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from oneplan.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta
from oneplan.protocols.tags import TagSplitter
from oneplan.providers.base import Preset, ProviderSettings, Target, register
from oneplan.providers.http import HttpTransport
from oneplan.providers.openai_compatible import OpenAICompatible

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
_SWITCHABLE = re.compile(r"^minimax-m[3-9]", re.IGNORECASE)  # models that may stop thinking

# base_resp.status_code -> how oneplan treats it (MiniMax's documented error codes).
_RATE_LIMITED = frozenset({1002, 1039, 1041, 2045})
_BAD_CREDENTIALS = frozenset({1004, 2049})
_NO_BALANCE = frozenset({1008})
_REJECTED = frozenset({1026, 1027, 1042, 2013})
_TIMED_OUT = frozenset({1001})


def base_resp_error(base_resp: Any, name: str) -> UpstreamError | None:
    """The ``oneplan.errors`` value for a MiniMax ``base_resp``, or None when it reports success."""
    if not isinstance(base_resp, dict):
        return None
    try:
        code = int(base_resp.get("status_code") or 0)
    except (TypeError, ValueError):
        return None
    if code == 0:
        return None
    text = f"{name}: MiniMax error {code}: {base_resp.get('status_msg') or 'unknown'}"
    if code in _RATE_LIMITED:
        return UpstreamRateLimited(text, upstream_status=429)
    if code in _BAD_CREDENTIALS:
        return UpstreamError(text, upstream_status=401, retryable=True)
    if code in _NO_BALANCE:
        return UpstreamError(text, upstream_status=402, retryable=True)
    if code in _REJECTED:
        return UpstreamRejected(text, upstream_status=400)
    if code in _TIMED_OUT:
        return UpstreamTimeout(text, upstream_status=504)
    return UpstreamUnavailable(text, upstream_status=500)


class ThinkSplitter:
    """Separates a leading ``<think>...</think>`` block from answer text, chunk by chunk.

    A tag may be cut anywhere across chunks, so a tail that could still become a tag is held
    back until the next chunk decides it. Only a block at the very start of the answer (after
    whitespace) is reasoning: a ``<think>`` later in the text is the model talking about tags.
    The newlines MiniMax puts between ``</think>`` and the answer are dropped.
    """

    __slots__ = ("_split", "_state", "_trim")

    def __init__(self) -> None:
        self._split = TagSplitter()
        self._state = "start"  # "start" -> "think" -> "text", or "start" -> "text"
        self._trim = False

    def feed(self, chunk: str) -> tuple[str, str]:
        """Returns ``(reasoning, text)`` that this chunk settles (either may be empty)."""
        if self._state == "text" and not self._split:
            return "", self._text(chunk)
        self._split.feed(chunk)
        reasoning = ""
        if self._state == "start":
            opens = self._split.lead(OPEN_TAG)
            if opens is None:  # empty, whitespace, or a tag still arriving
                return "", ""
            self._state = "think" if opens else "text"
        if self._state == "think":
            reasoning, closed = self._split.next((CLOSE_TAG,))
            if closed is None:
                return reasoning, ""
            self._state = "text"
            self._trim = True
        return reasoning, self._text(self._split.rest())

    def flush(self) -> tuple[str, str]:
        """What is still held back once the answer ended (a cut-off tag stays as it was)."""
        rest = self._split.rest()
        if self._state == "think":
            return rest, ""
        self._state = "text"
        return "", self._text(rest) if rest.strip() else ""

    def _text(self, chunk: str) -> str:
        if self._trim:
            chunk = chunk.lstrip("\r\n")
            if chunk:
                self._trim = False
        return chunk


class _ReasoningDetails:
    """Turns streamed ``reasoning_details`` texts into increments.

    MiniMax's documented streaming example treats each text as the whole reasoning so far,
    while the live API sends increments. The second non-empty text decides which it is.
    """

    __slots__ = ("_cumulative", "_seen")

    def __init__(self) -> None:
        self._seen = ""
        self._cumulative: bool | None = None

    def increment(self, text: str) -> str:
        if self._cumulative is None and self._seen:
            self._cumulative = len(text) > len(self._seen) and text.startswith(self._seen)
        if self._cumulative:
            new = text.removeprefix(self._seen)
            self._seen = text if text.startswith(self._seen) else self._seen + text
            return new
        self._seen += text
        return text


class _Transport(HttpTransport):
    def body_error(self, raw: bytes) -> UpstreamError:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            err = base_resp_error(data.get("base_resp"), self.settings.name)
            if err is not None:
                return err
        return super().body_error(raw)


@register("minimax")
class MiniMax(OpenAICompatible):
    preset = Preset(
        base_urls={
            "default": "https://api.minimax.io/v1",
            "intl": "https://api.minimax.io/v1",
            "cn": "https://api.minimaxi.com/v1",
        },
        anthropic_base_urls={
            "default": "https://api.minimax.io/anthropic",
            "intl": "https://api.minimax.io/anthropic",
            "cn": "https://api.minimaxi.com/anthropic",
        },
        env_keys=("MINIMAX_API_KEY",),
        models=("MiniMax-M3", "MiniMax-M2.7", "MiniMax-M2.7-highspeed", "MiniMax-M2.5"),
        small_model="MiniMax-M2.7-highspeed",
    )
    max_tokens_field = "max_completion_tokens"
    sends_reasoning_back = True

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.http = _Transport(settings)
        self.split = bool(settings.options.get("reasoning_split", True))

    # -- request ---------------------------------------------------------------------------

    def apply_thinking(self, body: dict[str, Any], request: ChatRequest) -> None:
        """M2 always thinks, so only the answer's shape is chosen; M3 takes
        ``thinking: {"type": "adaptive" | "disabled"}`` (not ``enabled``)."""
        if self.split:
            body.setdefault("reasoning_split", True)
        if _SWITCHABLE.match(str(body.get("model", ""))) and request.thinking.enabled is not None:
            body.setdefault("thinking", {"type": "adaptive" if request.thinking.enabled else "disabled"})

    def outgoing_message(self, message: dict[str, Any]) -> dict[str, Any]:
        out = super().outgoing_message(message)
        reasoning = out.get("reasoning_content")
        if out.get("role") != "assistant" or "reasoning_content" not in out:
            return out
        out = {k: v for k, v in out.items() if k != "reasoning_content"}
        if not reasoning:
            return out
        if self.split:
            out["reasoning_details"] = [
                {
                    "type": "reasoning.text",
                    "id": "reasoning-text-1",
                    "format": "MiniMax-response-v1",
                    "index": 0,
                    "text": reasoning,
                }
            ]
        else:
            out["content"] = f"{OPEN_TAG}\n{reasoning}\n{CLOSE_TAG}\n\n{out.get('content') or ''}"
        return out

    # -- answer ----------------------------------------------------------------------------

    def reasoning_of(self, part: dict[str, Any]) -> str | None:
        details = part.get("reasoning_details")
        if isinstance(details, list):
            texts = [d.get("text") for d in details if isinstance(d, dict) and isinstance(d.get("text"), str)]
            joined = "".join(t for t in texts if t)
            if joined:
                return joined
        return super().reasoning_of(part)

    def check_body_error(self, obj: dict[str, Any]) -> None:
        err = base_resp_error(obj.get("base_resp"), self.name)
        if err is not None:
            raise err
        super().check_body_error(obj)

    def parse_response(self, obj: dict[str, Any], target: Target) -> ChatResult:
        result = super().parse_response(obj, target)
        if result.text:
            splitter = ThinkSplitter()
            thought, text = splitter.feed(result.text)
            more_thought, more_text = splitter.flush()
            thought, text = thought + more_thought, text + more_text
            if thought:
                result.reasoning = (result.reasoning or "") + thought
            result.text = text or None
        return result

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        splitter = ThinkSplitter()
        details = _ReasoningDetails()
        started = False
        async for delta in super().stream(request, target):
            if delta.reasoning:
                delta.reasoning = details.increment(delta.reasoning) or None
            if delta.text:
                thought, text = splitter.feed(delta.text)
                delta.reasoning = ((delta.reasoning or "") + thought) or None
                delta.text = text or None
            if delta.finish_reason:
                _add(delta, *splitter.flush())
            if _empty(delta):
                if started and not delta.more:
                    yield Delta()  # nothing to show, but the read is over: let the gateway flush
                continue
            started = True
            yield delta
        thought, text = splitter.flush()
        if thought or text:
            yield Delta(reasoning=thought or None, text=text or None)


def _add(delta: Delta, thought: str, text: str) -> None:
    if thought:
        delta.reasoning = (delta.reasoning or "") + thought
    if text:
        delta.text = (delta.text or "") + text


def _empty(delta: Delta) -> bool:
    return not (
        delta.text
        or delta.reasoning
        or delta.tool_calls
        or delta.finish_reason
        or delta.usage
        or delta.reasoning_signature
    )
