"""The OpenAI Responses dialect (``POST /v1/responses``), for the same-protocol pass-through.

Stream: ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` ... ``response.output_item.done`` (a reasoning summary, a message
with ``response.output_text.delta``, function calls with
``response.function_call_arguments.delta``), and ``response.completed`` carrying usage
(``response.incomplete`` when the answer was cut by the token limit). Every event is named and
numbered (``sequence_number``).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.answers import Plan, Tokens
from tests.fakes.chat import ChatDialect
from tests.fakes.dialect import dialect, sse


@dialect("responses")
class ResponsesDialect(ChatDialect):
    """Auth and errors are OpenAI's (inherited); only the answer shapes differ."""

    endpoint = "/responses"

    def thinking(self, body: dict[str, Any]) -> tuple[bool, int | None]:
        reasoning = body.get("reasoning") or {}
        return isinstance(reasoning, dict) and reasoning.get("effort") not in (None, "none"), None

    def malformed_frame(self) -> bytes:
        return b'event: response.output_text.delta\ndata: {"type": "response.output_text.de\n\n'

    def stream_error(self, status: int, message: str | None = None) -> bytes:
        body = {"type": "error", "code": "server_error", "message": message or "error", "param": None}
        return sse(body, "error")

    # -- rendering -------------------------------------------------------------------------

    def items(self, plan: Plan) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if plan.reasoning_pieces:
            out.append(
                {
                    "id": f"rs_{plan.uid:016d}",
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": plan.reasoning}],
                }
            )
        if plan.text_pieces:
            out.append(
                {
                    "id": f"msg_{plan.uid:016d}",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": plan.text, "annotations": []}],
                }
            )
        for i, spec in enumerate(plan.tool_calls):
            out.append(
                {
                    "id": f"fc_{plan.uid:014d}{i:02d}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": spec.id or f"call_{plan.uid:010d}{i:02d}",
                    "name": spec.name,
                    "arguments": spec.arguments,
                }
            )
        return out

    def resp_usage(self, plan: Plan) -> dict[str, Any]:
        t = plan.tokens
        return {
            "input_tokens": t.input_tokens,
            "input_tokens_details": {"cached_tokens": t.cached_tokens},
            "output_tokens": t.output_tokens,
            "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
            "total_tokens": t.total,
        }

    def response(self, plan: Plan, *, done: bool) -> dict[str, Any]:
        incomplete = plan.finish == "length"
        status = ("incomplete" if incomplete else "completed") if done else "in_progress"
        return {
            "id": f"resp_{plan.uid:016d}",
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": plan.model,
            "output": self.items(plan) if done else [],
            "incomplete_details": {"reason": "max_output_tokens"} if done and incomplete else None,
            "usage": self.resp_usage(plan) if done else None,
        }

    def answer(self, body: dict[str, Any], plan: Plan) -> tuple[dict[str, Any], Tokens | None]:
        return self.response(plan, done=True), plan.tokens

    def frames(self, body: dict[str, Any], plan: Plan) -> tuple[list[bytes], Tokens | None]:
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self.response(plan, done=False)},
            {"type": "response.in_progress", "response": self.response(plan, done=False)},
        ]
        for index, item in enumerate(self.items(plan)):
            events += _item_events(index, item, plan)
        final = self.response(plan, done=True)
        events.append({"type": f"response.{final['status']}", "response": final})
        frames = []
        for number, event in enumerate(events):
            event["sequence_number"] = number
            frames.append(sse(event, event["type"]))
        return frames, plan.tokens


def _item_events(index: int, item: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    where = {"item_id": item["id"], "output_index": index}
    kind = item["type"]
    if kind == "message":
        opened = {**item, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        out = [{"type": "response.output_item.added", "output_index": index, "item": opened}]
        out.append({"type": "response.content_part.added", **where, "content_index": 0, "part": part})
        out += [
            {"type": "response.output_text.delta", **where, "content_index": 0, "delta": p}
            for p in plan.text_pieces
        ]
        out.append({"type": "response.output_text.done", **where, "content_index": 0, "text": plan.text})
        out.append(
            {"type": "response.content_part.done", **where, "content_index": 0, "part": item["content"][0]}
        )
    elif kind == "function_call":
        opened = {**item, "status": "in_progress", "arguments": ""}
        position = int(item["id"][-2:])
        out = [{"type": "response.output_item.added", "output_index": index, "item": opened}]
        out += [
            {"type": "response.function_call_arguments.delta", **where, "delta": p}
            for p in plan.arg_pieces[position]
        ]
        out.append({"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]})
    else:  # reasoning summary
        opened = {**item, "summary": []}
        part = {"type": "summary_text", "text": ""}
        out = [{"type": "response.output_item.added", "output_index": index, "item": opened}]
        out.append(
            {"type": "response.reasoning_summary_part.added", **where, "summary_index": 0, "part": part}
        )
        out += [
            {"type": "response.reasoning_summary_text.delta", **where, "summary_index": 0, "delta": p}
            for p in plan.reasoning_pieces
        ]
        out.append(
            {
                "type": "response.reasoning_summary_text.done",
                **where,
                "summary_index": 0,
                "text": plan.reasoning,
            }
        )
        out.append(
            {
                "type": "response.reasoning_summary_part.done",
                **where,
                "summary_index": 0,
                "part": item["summary"][0],
            }
        )
    out.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return out
