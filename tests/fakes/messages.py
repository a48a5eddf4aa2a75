"""The Anthropic Messages dialect (Anthropic itself and the Anthropic-compatible endpoints).

Stream: ``message_start``, ``ping``, then one block at a time (``thinking`` with
``thinking_delta`` and a closing ``signature_delta``, ``text`` with ``text_delta``, ``tool_use``
with ``input_json_delta``), ``message_delta`` (stop reason, output tokens), ``message_stop``.
Like the real API it wants ``anthropic-version`` and ``max_tokens``, checks the thinking budget,
and refuses an echoed thinking block whose signature it never issued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tests.fakes.answers import Plan, Tokens
from tests.fakes.dialect import Dialect, dialect, sse

_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


@dialect("anthropic")
class AnthropicDialect(Dialect):
    """Anthropic itself: explicit caching at ``cache_control`` breakpoints, usage with
    ``input_tokens`` *excluding* the cache reads and writes reported beside it, and the writes
    split by lifetime in ``cache_creation``."""

    prefix = ""
    endpoint = "/v1/messages"
    explicit_cache = True
    cache_order_anthropic = True
    splits_cache_creation = True  # usage.cache_creation.ephemeral_5m/1h_input_tokens

    def __init__(self) -> None:
        super().__init__()
        self.signatures: set[str] = set()

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        return headers.get("x-api-key") == key or headers.get("authorization") == f"Bearer {key}"

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        if not headers.get("anthropic-version"):
            return 400, "anthropic-version: header is required"
        if not isinstance(body.get("max_tokens"), int):
            return 400, "max_tokens: Field required"
        switch = body.get("thinking") or {}
        if switch.get("type") == "enabled":
            budget = switch.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                return 400, "thinking.enabled.budget_tokens: Input should be >= 1024"
            if budget >= body["max_tokens"]:
                return 400, "`max_tokens` must be greater than `thinking.budget_tokens`"
        for msg in body.get("messages") or ():
            for block in msg.get("content") or () if isinstance(msg, dict) else ():
                if isinstance(block, dict) and block.get("type") == "thinking":
                    if block.get("signature") not in self.signatures:
                        return 400, "Invalid `signature` in `thinking` block"
        return None

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        switch = body.get("thinking") or {}
        on = switch.get("type") in ("enabled", "adaptive")
        return on, switch.get("budget_tokens") if on else None

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        kind = _ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message or kind}}

    def stream_error(self, status: int, message: str | None = None) -> bytes:
        return sse(self.error_body(status, message), "error")

    def malformed_frame(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'

    # -- rendering -------------------------------------------------------------------------

    def signature(self, plan: Plan) -> str:
        sig = "Eq" + hashlib.sha256(f"{plan.uid}:{plan.reasoning}".encode()).hexdigest()
        self.signatures.add(sig)
        return sig

    def stop_reason(self, plan: Plan) -> str:
        if plan.finish:
            return _STOP.get(plan.finish, plan.finish)
        return "tool_use" if plan.tool_calls else "end_turn"

    def usage(self, plan: Plan, *, output: int | None = None) -> dict[str, Any]:
        t = plan.tokens
        out: dict[str, Any] = {
            "input_tokens": t.uncached,
            "cache_creation_input_tokens": t.cache_write_tokens,
            "cache_read_input_tokens": t.cached_tokens,
            "output_tokens": t.output_tokens if output is None else output,
        }
        if self.splits_cache_creation:
            out["cache_creation"] = {
                "ephemeral_5m_input_tokens": t.cache_write_tokens - t.cache_write_1h_tokens,
                "ephemeral_1h_input_tokens": t.cache_write_1h_tokens,
            }
        return out

    def tool_id(self, plan: Plan, index: int) -> str:
        return plan.tool_calls[index].id or f"toolu_{plan.uid:010d}{index:02d}"

    def blocks(self, plan: Plan) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if plan.reasoning_pieces:
            out.append({"type": "thinking", "thinking": plan.reasoning, "signature": self.signature(plan)})
        if plan.text_pieces:
            out.append({"type": "text", "text": plan.text})
        for i, spec in enumerate(plan.tool_calls):
            out.append(
                {
                    "type": "tool_use",
                    "id": self.tool_id(plan, i),
                    "name": spec.name,
                    "input": json.loads(spec.arguments or "{}"),
                }
            )
        return out

    def head(self, plan: Plan) -> dict[str, Any]:
        return {
            "id": f"msg_{plan.uid:020d}",
            "type": "message",
            "role": "assistant",
            "model": plan.model,
        }

    def answer(self, body: dict[str, Any], plan: Plan) -> tuple[dict[str, Any], Tokens | None]:
        out = {
            **self.head(plan),
            "content": self.blocks(plan),
            "stop_reason": self.stop_reason(plan),
            "stop_sequence": None,
            "usage": self.usage(plan),
        }
        return out, plan.tokens

    def frames(self, body: dict[str, Any], plan: Plan) -> tuple[list[bytes], Tokens | None]:
        start = {
            **self.head(plan),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self.usage(plan, output=1),
        }
        out = [sse({"type": "message_start", "message": start}, "message_start")]
        out.append(sse({"type": "ping"}, "ping"))
        index = 0
        if plan.reasoning_pieces:
            block: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in plan.reasoning_pieces]
            deltas.append({"type": "signature_delta", "signature": self.signature(plan)})
            out += _block(index, block, deltas)
            index += 1
        if plan.text_pieces:
            deltas = [{"type": "text_delta", "text": p} for p in plan.text_pieces]
            out += _block(index, {"type": "text", "text": ""}, deltas)
            index += 1
        for i, spec in enumerate(plan.tool_calls):
            block = {"type": "tool_use", "id": self.tool_id(plan, i), "name": spec.name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in plan.arg_pieces[i]]
            out += _block(index, block, deltas)
            index += 1
        delta = {"stop_reason": self.stop_reason(plan), "stop_sequence": None}
        usage = {"output_tokens": plan.tokens.output_tokens}
        out.append(sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"))
        out.append(sse({"type": "message_stop"}, "message_stop"))
        return out, plan.tokens


def _block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
    out = [
        sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
    ]
    out += [
        sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")
        for d in deltas
    ]
    out.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return out


@dialect("anthropic-dashscope")
class DashScopeAnthropicDialect(AnthropicDialect):
    """Model Studio's ``/apps/anthropic``: explicit cache (5 min only, Claude Code's markers are
    honoured: "Explicit Cache Best Practices"), Anthropic usage fields [V]; no lifetime split [I]."""

    prefix = "/apps/anthropic"
    splits_cache_creation = False


@dialect("anthropic-minimax")
class MiniMaxAnthropicDialect(AnthropicDialect):
    """MiniMax's ``/anthropic``: explicit cache with ``cache_control``, usage exactly
    ``{cache_creation_input_tokens, cache_read_input_tokens, input_tokens, output_tokens}``
    ("Explicit Prompt Caching (Anthropic API)") [V]."""

    prefix = "/anthropic"
    splits_cache_creation = False


@dialect("anthropic-moonshot")
class MoonshotAnthropicDialect(AnthropicDialect):
    """Kimi's ``/anthropic``: automatic caching only, ``cache_control`` accepted and ignored,
    ``cache_creation_input_tokens`` always 0 [3P]; reads are scripted with ``cached=``."""

    prefix = "/anthropic"
    explicit_cache = False
    splits_cache_creation = False

    def usage(self, plan: Plan, *, output: int | None = None) -> dict[str, Any]:
        t = plan.tokens
        return {
            "input_tokens": t.input_tokens - t.cached_tokens,  # a write is fresh input here
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": t.cached_tokens,
            "output_tokens": t.output_tokens if output is None else output,
        }


@dialect("anthropic-zhipu")
class ZhipuAnthropicDialect(MoonshotAnthropicDialect):
    """Z.ai's ``/api/anthropic``: GLM caches implicitly [V]; reported as Anthropic reads [I]."""

    prefix = "/api/anthropic"
