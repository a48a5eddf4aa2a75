"""The agent loop: one sentence in, tool calls out, until the order is placed or the model stops.

It speaks to oneplan with the official SDKs - OpenAI Chat Completions (``openai``) or Anthropic
Messages (``anthropic``) - and any model name the key's plan includes. Each model turn may make
several tool calls (all are run, and their results go back together); a tool's refusal (sold out,
store closed) goes back as the tool's result for the model to recover from. The agent itself
keeps three promises whatever the model does: at most one clarifying question, no payment above
the limit without the customer's yes, and one order per idempotency key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from examples.one_sentence_order import tools
from examples.one_sentence_order.shop import Shop, money

SYSTEM = """You are the ordering agent of a coffee shop. Turn the customer's one sentence into a \
placed order with the tools: find the items (search_menu, get_item_options), check the store \
(check_store_hours), price the order (quote_order), then pay it (place_order).
Use the saved address labels and the default payment method unless the customer names another.
Ask the customer (ask_user) only if the sentence is genuinely ambiguous and no sensible default \
exists, and at most once. If a tool reports an error, such as an item sold out or a store closed, \
choose the closest alternative it offers, or stop and say why. End with one short sentence.
Saved addresses: {addresses}. Payment methods: {payments}."""


@dataclass(slots=True)
class Call:
    id: str
    name: str
    arguments: Any  # JSON text (OpenAI) or an object (Anthropic)


@dataclass(slots=True)
class Reply:
    text: str
    calls: list[Call]
    raw: Any = None


@dataclass(slots=True)
class Options:
    model: str
    protocol: str = "openai"  # or "anthropic"
    confirm_above_cents: int = 2500
    assume_yes: bool = False
    answers: list[str] = field(default_factory=list)  # answers to the clarifying question
    idempotency_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    max_turns: int = 12
    max_tokens: int = 1024


@dataclass(slots=True)
class Outcome:
    orders: list[dict[str, Any]]
    message: str
    model_calls: int
    questions: int = 0

    @property
    def placed(self) -> bool:
        return bool(self.orders)


class OpenAIChat:
    """The conversation in OpenAI Chat Completions shape."""

    def __init__(self, client: Any, options: Options, system: str, sentence: str) -> None:
        self.client, self.options = client, options
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": system}, {"role": "user", "content": sentence}]

    def complete(self) -> Reply:
        answer = self.client.chat.completions.create(
            model=self.options.model, messages=self.messages, tools=tools.openai_tools(),
            max_tokens=self.options.max_tokens)
        message = answer.choices[0].message
        calls = [Call(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()]
        return Reply(message.content or "", calls, message)

    def add(self, reply: Reply, results: list[tuple[Call, dict[str, Any]]]) -> None:
        turn: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        reasoning = (reply.raw.model_extra or {}).get("reasoning_content")
        if reasoning:  # the providers that want earlier reasoning back get it (oneplan routes it)
            turn["reasoning_content"] = reasoning
        if reply.calls:
            turn["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in reply.calls]
        self.messages.append(turn)
        for c, result in results:
            self.messages.append({"role": "tool", "tool_call_id": c.id, "content": json.dumps(result)})


class AnthropicMessages:
    """The conversation in Anthropic Messages shape."""

    def __init__(self, client: Any, options: Options, system: str, sentence: str) -> None:
        self.client, self.options, self.system = client, options, system
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": sentence}]

    def complete(self) -> Reply:
        answer = self.client.messages.create(
            model=self.options.model, system=self.system, messages=self.messages,
            tools=tools.anthropic_tools(), max_tokens=self.options.max_tokens)
        text = "".join(b.text for b in answer.content if b.type == "text")
        calls = [Call(b.id, b.name, b.input) for b in answer.content if b.type == "tool_use"]
        return Reply(text, calls, answer)

    def add(self, reply: Reply, results: list[tuple[Call, dict[str, Any]]]) -> None:
        # Every block goes back as it came, thinking (with its signature) included.
        blocks = [b.model_dump(exclude_none=True) for b in reply.raw.content]
        self.messages.append({"role": "assistant", "content": blocks})
        self.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": json.dumps(result),
             **({"is_error": True} if "error" in result else {})}
            for c, result in results]})


class Agent:
    def __init__(self, shop: Shop, options: Options, client: Any,
                 ask: Callable[[str], str | None], say: Callable[[str], None]) -> None:
        self.shop, self.options, self.client = shop, options, client
        self.ask, self.say = ask, say
        self.orders: dict[str, dict[str, Any]] = {}
        self.questions = 0

    def run(self, sentence: str) -> Outcome:
        profile = self.shop.profile()
        system = SYSTEM.format(addresses=", ".join(profile["addresses"]),
                               payments=", ".join(f"{k} ({v})" for k, v in profile["payments"].items()))
        kind = AnthropicMessages if self.options.protocol == "anthropic" else OpenAIChat
        chat = kind(self.client, self.options, system, sentence)
        calls = 0
        while calls < self.options.max_turns:
            reply = chat.complete()
            calls += 1
            if not reply.calls:
                return self._outcome(reply.text.strip() or "(the model said nothing)", calls)
            if reply.text.strip():
                self.say(f"  model: {reply.text.strip()}")
            chat.add(reply, [(c, self.execute(c)) for c in reply.calls])
        return self._outcome(f"stopped: no answer after {calls} model calls", calls)

    def _outcome(self, message: str, calls: int) -> Outcome:
        return Outcome(list(self.orders.values()), message, calls, self.questions)

    def execute(self, call: Call) -> dict[str, Any]:
        try:
            args = tools.parse_arguments(call.arguments)
        except tools.ShopError as refusal:
            result = refusal.as_result()
        else:
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
            self.say(f"  -> {call.name}({shown})")
            if call.name == "ask_user":
                result = self._question(str(args.get("question") or ""))
            elif call.name == "place_order":
                result = self._place(args)
            else:
                result = tools.call(self.shop, call.name, args)
        if "error" in result:
            self.say(f"     {result['error']}: {result.get('message', '')}")
        return result

    def _question(self, question: str) -> dict[str, Any]:
        if self.questions:
            return {"error": "no_more_questions",
                    "message": "the customer was already asked once; decide with what you know"}
        self.questions += 1
        self.say(f"  ? {question}")
        answer = self.options.answers.pop(0) if self.options.answers else self.ask(f"{question} ")
        if not answer:
            return {"error": "no_answer", "message": "the customer did not answer; use a sensible default or stop"}
        self.say(f"    {answer}")
        return {"user_answer": answer}

    def _place(self, args: dict[str, Any]) -> dict[str, Any]:
        quote_id = str(args.get("quote_id") or "")
        quote = self.shop.get_quote(quote_id)
        key = f"{self.options.idempotency_key}:{quote_id}"
        if quote is not None and quote_id not in self.orders:
            cents = round(float(quote["total"]) * 100)
            if cents > self.options.confirm_above_cents and not self._confirmed(quote):
                return {"error": "not_confirmed",
                        "message": f"the customer did not approve paying {quote['total']} {quote['currency']}; "
                        "do not place the order"}
        result = tools.call(self.shop, "place_order", args, idempotency_key=key)
        if "placed_order" in result:
            self.orders[quote_id] = result["placed_order"]
        return result

    def _confirmed(self, quote: dict[str, Any]) -> bool:
        limit = money(self.options.confirm_above_cents)
        prompt = f"Pay {quote['total']} {quote['currency']} (above your limit of {limit})? [y/N] "
        if self.options.assume_yes:
            self.say(f"  {prompt}yes (--yes)")
            return True
        answer = self.ask(prompt)
        return (answer or "").strip().lower() in ("y", "yes")


def receipt(order: dict[str, Any]) -> str:
    width = 44
    rows = [f"Receipt {order['order_id']}" + ("  (already placed: replayed)" if order.get("replayed") else "")]
    for line in order["lines"]:
        detail = ", ".join(x for x in (line.get("size"), line.get("milk") and f"{line['milk']} milk",
                                       *line.get("extras", [])) if x)
        label = f"{line['quantity']} x {line['name']}" + (f" ({detail})" if detail else "")
        rows.append(f"  {label:<{width - 10}}{line['line_total']:>8}")
    rows.append(f"  {'Delivery to ' + order['address']:<{width - 10}}{order['delivery_fee']:>8}")
    rows.append(f"  {'Total ' + order['currency']:<{width - 10}}{order['total']:>8}")
    rows.append(f"  Paid with {order['payment']}; arriving in about {order['eta_minutes']} min; "
                f"status: {order['status']}")
    return "\n".join(rows)
