"""Chat Completions dialects: vLLM-like OpenAI, DashScope, Zhipu, Moonshot, MiniMax.

Each follows its provider's documented wire behaviour; the differences live in small overrides:
where reasoning goes, what switches it, where usage appears in a stream and whether it must be
asked for, how tool-call arguments are streamed, and how errors look.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from tests.fakes.answers import Plan, Tokens
from tests.fakes.dialect import Dialect, dialect, sse

_DONE = b"data: [DONE]\n\n"
_OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_request", "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", "permission_denied", "You are not allowed to do this."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached, slow down."),
}


class ChatDialect(Dialect):
    """OpenAI Chat Completions as vLLM serves it; the base of every preset dialect."""

    prefix = "/v1"
    endpoint = "/chat/completions"
    reasoning_key = "reasoning"
    usage_only_when_asked = True  # a stream reports usage only with stream_options.include_usage
    chunk_object = True  # chunks carry "object": "chat.completion.chunk"

    # -- request ---------------------------------------------------------------------------

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        kwargs = body.get("chat_template_kwargs") or {}
        if isinstance(kwargs, dict) and kwargs.get("enable_thinking") is False:
            return False, None
        return body.get("reasoning_effort") != "none", None

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        # Qwen's chat template (what vLLM, SGLang and Ollama render) refuses a system message
        # anywhere but first, and so does a template with a single system slot.
        roles = [m.get("role") for m in body.get("messages") or () if isinstance(m, dict)]
        if "system" in roles[1:]:
            return 400, "System message must be at the beginning."
        return None

    # -- errors ----------------------------------------------------------------------------

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        kind, code, text = _OPENAI_ERRORS.get(
            status, ("server_error", "server_error", "The server had an error.")
        )
        return {"error": {"message": message or text, "type": kind, "param": None, "code": code}}

    # -- pieces of an answer ---------------------------------------------------------------

    def answer_id(self, plan: Plan) -> str:
        return f"chatcmpl-{plan.uid:08d}"

    def call_id(self, plan: Plan, index: int) -> str:
        spec = plan.tool_calls[index]
        return spec.id or f"call_{plan.uid:04d}{index:02d}"

    def finish(self, plan: Plan) -> str:
        return plan.finish or ("tool_calls" if plan.tool_calls else "stop")

    def usage(self, plan: Plan) -> dict[str, Any]:
        t = plan.tokens
        return {
            "prompt_tokens": t.input_tokens,
            "completion_tokens": t.output_tokens,
            "total_tokens": t.total,
            "prompt_tokens_details": {"cached_tokens": t.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        }

    def reasoning_fields(self, text: str) -> dict[str, Any]:
        return {self.reasoning_key: text}

    def content_pieces(self, plan: Plan) -> list[str]:
        return plan.text_pieces

    def message(self, body: dict[str, Any], plan: Plan) -> dict[str, Any]:
        content = "".join(self.content_pieces(plan))
        msg: dict[str, Any] = {"role": "assistant", "content": content or None}
        if plan.reasoning_pieces:
            msg.update(self.reasoning_fields(plan.reasoning))
        if plan.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": self.call_id(plan, i),
                    "type": "function",
                    "function": {"name": spec.name, "arguments": spec.arguments},
                }
                for i, spec in enumerate(plan.tool_calls)
            ]
        return msg

    def answer(self, body: dict[str, Any], plan: Plan) -> tuple[dict[str, Any], Tokens | None]:
        out = {
            "id": self.answer_id(plan),
            "object": "chat.completion",
            "created": self.created,
            "model": plan.model,
            "choices": [
                {"index": 0, "message": self.message(body, plan), "finish_reason": self.finish(plan)}
            ],
            "usage": self.usage(plan),
        }
        return out, plan.tokens

    # -- streams ---------------------------------------------------------------------------

    def chunk(self, plan: Plan, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.answer_id(plan)}
        if self.chunk_object:
            out["object"] = "chat.completion.chunk"
        out["created"] = self.created
        out["model"] = plan.model
        out["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return out

    def streams_tool_args(self, body: dict[str, Any]) -> bool:
        return True

    def tool_deltas(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        """One delta per chunk: id, type and name first, then the arguments in pieces."""
        out: list[dict[str, Any]] = []
        for i, spec in enumerate(plan.tool_calls):
            head = {"index": i, "id": self.call_id(plan, i), "type": "function"}
            if not self.streams_tool_args(body):
                fn = {"name": spec.name, "arguments": spec.arguments}
                out.append({"tool_calls": [{**head, "function": fn}]})
                continue
            out.append({"tool_calls": [{**head, "function": {"name": spec.name, "arguments": ""}}]})
            for piece in plan.arg_pieces[i]:
                out.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        return out

    def deltas(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        out += [self.reasoning_fields(p) for p in plan.reasoning_pieces]
        out += [{"content": p} for p in self.content_pieces(plan)]
        out += self.tool_deltas(body, plan)
        return out

    def include_usage(self, body: dict[str, Any]) -> bool:
        options = body.get("stream_options") or {}
        return bool(isinstance(options, dict) and options.get("include_usage"))

    def frames(self, body: dict[str, Any], plan: Plan) -> tuple[list[bytes], Tokens | None]:
        chunks = [self.chunk(plan, d) for d in self.deltas(body, plan)]
        chunks += self.closing_chunks(body, plan)
        reported = plan.tokens if any(c.get("usage") or _choice_usage(c) for c in chunks) else None
        return [sse(c) for c in chunks] + [_DONE], reported

    def closing_chunks(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        """OpenAI: the finish chunk, then (only when asked) a usage chunk with no choices."""
        last = self.chunk(plan, {}, self.finish(plan))
        if not self.include_usage(body):
            return [last]
        tail = self.chunk(plan, {})
        tail["choices"] = []
        tail["usage"] = self.usage(plan)
        return [last, tail]


def _choice_usage(chunk: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("usage") for c in chunk.get("choices") or ())


dialect("openai")(ChatDialect)


@dialect("dashscope")
class DashScopeDialect(ChatDialect):
    """Model Studio compatible mode: ``enable_thinking`` / ``thinking_budget``; explicit cache
    at ``cache_control`` markers in ``messages``, reported inside ``prompt_tokens`` as
    ``prompt_tokens_details.cached_tokens`` (hits) and ``cache_creation_input_tokens`` /
    ``cache_creation.ephemeral_5m_input_tokens`` (writes) ("Context cache")."""

    prefix = "/compatible-mode/v1"
    reasoning_key = "reasoning_content"
    explicit_cache = True

    def usage(self, plan: Plan) -> dict[str, Any]:
        out = super().usage(plan)
        t = plan.tokens
        if t.cache_write_tokens:
            out["prompt_tokens_details"].update(
                cache_creation_input_tokens=t.cache_write_tokens,
                cache_creation={"ephemeral_5m_input_tokens": t.cache_write_tokens},
                cache_type="ephemeral",
            )
        return out
    # Hybrid models that think when the request does not say: Qwen3.5 and later, and the
    # thinking-only models.
    thinks_by_default = re.compile(r"^qwen3\.[5-9]|thinking|^qwq", re.IGNORECASE)

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        flag = body.get("enable_thinking")
        if flag is not None and not isinstance(flag, bool):
            return 400, "<400> InternalError.Algo.InvalidParameter: enable_thinking must be bool"
        budget = body.get("thinking_budget")
        if budget is not None and (not isinstance(budget, int) or budget <= 0):
            return 400, "<400> InternalError.Algo.InvalidParameter: thinking_budget must be > 0"
        return None

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        flag = body.get("enable_thinking")
        if flag is None:
            flag = bool(self.thinks_by_default.search(str(body.get("model", ""))))
        return bool(flag), body.get("thinking_budget") if flag else None

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        kind, code, text = {
            400: ("invalid_request_error", "invalid_parameter_error", "Invalid parameter."),
            401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
            403: ("invalid_request_error", "access_denied", "Access denied."),
            404: ("invalid_request_error", "model_not_found", "The model does not exist."),
            429: ("limit_requests", "limit_requests", "Requests rate limit exceeded."),
        }.get(status, ("internal_error", "internal_error", "An internal error has occured."))
        return {
            "error": {"message": message or text, "type": kind, "param": None, "code": code},
            "id": f"chatcmpl-{uuid.uuid4()}",
            "request_id": str(uuid.uuid4()),
        }


@dialect("zhipu")
class ZhipuDialect(ChatDialect):
    """Z.ai / BigModel: ``thinking.type``, ``tool_stream``, usage always in the last chunk."""

    prefix = "/api/paas/v4"
    reasoning_key = "reasoning_content"
    chunk_object = False

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        switch = body.get("thinking")
        if switch is not None and (
            not isinstance(switch, dict) or switch.get("type") not in ("enabled", "disabled")
        ):
            return 400, "thinking.type must be enabled or disabled"
        if re.match(r"^glm-5\.[3-9]", str(body.get("model", "")), re.IGNORECASE) and switch and switch.get("type") == "disabled":
            return 400, "This model does not support disabling thinking."  # GLM-5.3 always thinks
        return None

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        switch = body.get("thinking") or {}
        return switch.get("type") != "disabled", None

    def answer_id(self, plan: Plan) -> str:
        return f"20250101{plan.uid:012d}"

    def call_id(self, plan: Plan, index: int) -> str:
        return plan.tool_calls[index].id or f"call_-{plan.uid:09d}{index:02d}"

    def streams_tool_args(self, body: dict[str, Any]) -> bool:
        return bool(body.get("tool_stream"))

    def closing_chunks(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        last = self.chunk(plan, {"role": "assistant", "content": ""}, self.finish(plan))
        last["usage"] = self.usage(plan)
        return [last]

    def usage(self, plan: Plan) -> dict[str, Any]:
        t = plan.tokens
        return {
            "prompt_tokens": t.input_tokens,
            "completion_tokens": t.output_tokens,
            "prompt_tokens_details": {"cached_tokens": t.cached_tokens},
            "total_tokens": t.total,
        }

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        code, text = {
            400: ("1214", "Invalid request parameters."),
            401: ("1000", "Authentication failed."),
            403: ("1220", "You do not have permission to access this model."),
            404: ("1211", "The model does not exist."),
            429: ("1302", "High concurrency usage of this API, please reduce concurrency."),
        }.get(status, ("500", "Internal Error"))
        return {"error": {"code": code, "message": message or text}}

    def stream_error(self, status: int, message: str | None = None) -> bytes:
        return sse(self.error_body(status, message))


@dialect("moonshot")
class MoonshotDialect(ChatDialect):
    """Kimi: ``thinking.type`` on kimi-k2.5, usage inside ``choices[0]`` of the last chunk."""

    reasoning_key = "reasoning_content"
    switchable = re.compile(r"^kimi-k[3-9]|^kimi-k2\.[5-9]|^kimi-for-coding", re.IGNORECASE)
    # K3 and K2.7-Code have no non-thinking mode: ``thinking`` disabled is a 400.
    always = re.compile(r"thinking|^kimi-k[3-9]|^kimi-k2\.7-code", re.IGNORECASE)
    fixed = {"top_p": 0.95, "n": 1, "presence_penalty": 0, "frequency_penalty": 0}

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        model = str(body.get("model", ""))
        if self.always.search(model):
            return True, None
        if not self.switchable.search(model):
            return False, None
        switch = body.get("thinking") or {}
        return switch.get("type") != "disabled", None

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        thinks, _ = self.thinking(body)
        switch = body.get("thinking")
        if self.always.search(str(body.get("model", ""))) and isinstance(switch, dict) and switch.get("type") == "disabled":
            return 400, "thinking cannot be disabled for this model"
        if self.switchable.search(str(body.get("model", ""))):
            fixed = {**self.fixed, "temperature": 1.0 if thinks else 0.6}
            for key, value in fixed.items():
                if key in body and body[key] != value:
                    return 400, f"invalid {key}: only {value} is allowed for this model"
        if thinks:
            for index, msg in enumerate(body.get("messages") or ()):
                if (
                    isinstance(msg, dict)
                    and msg.get("role") == "assistant"
                    and msg.get("tool_calls")
                    and not msg.get("reasoning_content")
                ):
                    return 400, (
                        "thinking is enabled but reasoning_content is missing in assistant "
                        f"tool call message at index {index}"
                    )
        return None

    def usage(self, plan: Plan) -> dict[str, Any]:
        t = plan.tokens
        return {
            "prompt_tokens": t.input_tokens,
            "completion_tokens": t.output_tokens,
            "total_tokens": t.total,
            "cached_tokens": t.cached_tokens,
        }

    def closing_chunks(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        last = self.chunk(plan, {}, self.finish(plan))
        last["choices"][0]["usage"] = self.usage(plan)
        return [last]

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        kind, text = {
            400: ("invalid_request_error", "Invalid request."),
            401: ("invalid_authentication_error", "Invalid Authentication"),
            403: ("permission_denied_error", "Permission denied."),
            404: ("resource_not_found_error", "Not found the model or Permission denied"),
            429: ("rate_limit_reached_error", "Your account reached max request rate."),
        }.get(status, ("server_error", "Internal server error."))
        return {"error": {"message": message or text, "type": kind}}


@dialect("minimax")
class MiniMaxDialect(ChatDialect):
    """MiniMax M2: always thinks; ``reasoning_split`` moves reasoning into ``reasoning_details``,
    otherwise it is inline ``<think>`` in content (cut across chunks); ``base_resp`` errors."""

    switchable = re.compile(r"^minimax-m[3-9]", re.IGNORECASE)
    inline_width = 7  # characters per inline-content chunk, so tags get cut across chunks

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        switch = body.get("thinking") or {}
        if self.switchable.search(str(body.get("model", ""))) and switch.get("type") == "disabled":
            return False, None
        return True, None

    def check(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, str] | None:
        switch = body.get("thinking")
        if self.switchable.search(str(body.get("model", ""))) and switch is not None and (
            not isinstance(switch, dict) or switch.get("type") not in ("adaptive", "disabled")
        ):
            return 400, "invalid params, thinking.type must be adaptive or disabled"  # M3
        return super().check(body, headers)

    def reasoning_fields(self, text: str) -> dict[str, Any]:
        detail = {
            "type": "reasoning.text",
            "id": "reasoning-text-1",
            "format": "MiniMax-response-v1",
            "index": 0,
            "text": text,
        }
        return {"reasoning_details": [detail]}

    def _split(self, body: dict[str, Any]) -> bool:
        return bool(body.get("reasoning_split"))

    def inline(self, plan: Plan) -> str:
        think = f"<think>\n{plan.reasoning}\n</think>\n\n" if plan.reasoning_pieces else ""
        return think + plan.text

    def message(self, body: dict[str, Any], plan: Plan) -> dict[str, Any]:
        msg = super().message(body, plan)
        msg["name"] = "MiniMax AI"
        msg["audio_content"] = ""
        if not self._split(body):
            msg.pop("reasoning_details", None)
            msg["content"] = self.inline(plan) or None
        return msg

    def deltas(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        if self._split(body):
            out = super().deltas(body, plan)
        else:
            content = self.inline(plan)
            w = self.inline_width
            out = [{"role": "assistant", "content": ""}]
            out += [{"content": content[i : i + w]} for i in range(0, len(content), w)]
            out += self.tool_deltas(body, plan)
        for delta in out:
            delta.setdefault("role", "assistant")
            delta["name"] = "MiniMax AI"
            delta["audio_content"] = ""
        return out

    def answer(self, body: dict[str, Any], plan: Plan) -> tuple[dict[str, Any], Tokens | None]:
        out, reported = super().answer(body, plan)
        out["input_sensitive"] = False
        out["output_sensitive"] = False
        out["base_resp"] = {"status_code": 0, "status_msg": ""}
        return out, reported

    def closing_chunks(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        last = self.chunk(plan, {"role": "assistant", "content": ""}, self.finish(plan))
        last["usage"] = self.usage(plan)
        last["input_sensitive"] = False
        last["output_sensitive"] = False
        last["base_resp"] = {"status_code": 0, "status_msg": ""}
        return [last]

    _CODES = {
        400: (2013, "invalid params"),
        401: (1004, "login fail: Please carry the API secret key in the 'Authorization' field"),
        403: (1004, "no permission"),
        429: (1002, "rate limit exceeded(RPM)"),
    }

    def error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        code, text = self._CODES.get(status, (1000, "unknown error"))
        return {"base_resp": {"status_code": code, "status_msg": message or text}}


@dialect("deepseek")
class DeepSeekDialect(ChatDialect):
    """DeepSeek: implicit context caching reported as ``prompt_cache_hit_tokens`` and
    ``prompt_cache_miss_tokens``, whose sum is ``prompt_tokens`` ("Context Caching")."""

    prefix = ""
    reasoning_key = "reasoning_content"

    def usage(self, plan: Plan) -> dict[str, Any]:
        t = plan.tokens
        return {
            "prompt_tokens": t.input_tokens,
            "completion_tokens": t.output_tokens,
            "total_tokens": t.total,
            "prompt_cache_hit_tokens": t.cached_tokens,
            "prompt_cache_miss_tokens": t.input_tokens - t.cached_tokens,
            "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        }
