"""The shop's tools as a model sees them (JSON schemas) and how a call is carried out.

Every tool answers a JSON object: the result under one key named for what it is
(``menu_matches``, ``item_options``, ``store_hours``, ``order_quote``, ``placed_order``,
``order_status``), or ``{"error": code, "message": ...}`` for an expected refusal - an item sold
out, a store closed, an unknown id, bad arguments - which goes back to the model as the tool's
result, never as a crash. ``ask_user`` and the idempotency key of ``place_order`` belong to the
agent (``agent.py``), not to the shop.
"""

from __future__ import annotations

import json
from typing import Any

from examples.one_sentence_order.shop import Shop, ShopError

_ITEM = {
    "type": "object",
    "properties": {
        "item_id": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 20},
        "size": {"type": "string", "description": "small, medium or large (drinks)"},
        "milk": {"type": "string", "description": "whole, skim, oat or almond (drinks)"},
        "extras": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["item_id", "quantity"],
}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required}}


TOOLS = [
    _tool("search_menu", "Find menu items by name or kind (e.g. 'latte', 'coffee', 'croissant').",
          {"query": {"type": "string"}}, ["query"]),
    _tool("get_item_options", "Sizes, milks and extras of one menu item, with their prices.",
          {"item_id": {"type": "string"}}, ["item_id"]),
    _tool("check_store_hours", "Opening hours of the stores, whether each is open now; with an address, "
          "only the stores that deliver there, with the delivery fee and time.",
          {"store_id": {"type": "string"}, "address": {"type": "string"}}, []),
    _tool("quote_order", "Price an order for delivery to a saved address: item prices, delivery fee, "
          "total and ETA. Returns a quote_id to place it. The cheapest open store that delivers is "
          "used unless store_id is given.",
          {"address": {"type": "string", "description": "a saved address label, e.g. office"},
           "items": {"type": "array", "items": _ITEM},
           "payment": {"type": "string", "description": "a payment method id, or 'default'"},
           "store_id": {"type": "string"}},
          ["address", "items"]),
    _tool("place_order", "Place and pay a quoted order.", {"quote_id": {"type": "string"}}, ["quote_id"]),
    _tool("get_order_status", "The status of a placed order.", {"order_id": {"type": "string"}}, ["order_id"]),
    _tool("ask_user", "Ask the customer one short question, only when the request is genuinely "
          "ambiguous and no sensible default exists. At most once.",
          {"question": {"type": "string"}}, ["question"]),
]


def openai_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": tool} for tool in TOOLS]


def anthropic_tools() -> list[dict[str, Any]]:
    return [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]} for t in TOOLS]


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw and raw.strip() else {}
    except ValueError:
        raise ShopError("bad_arguments", "the arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise ShopError("bad_arguments", "the arguments must be a JSON object")
    return value


def _text(args: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ShopError("bad_arguments", f"{key} must be a non-empty string")
    return value


def call(shop: Shop, name: str, args: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
    """Run one shop tool; an expected refusal comes back as ``{"error": ...}``."""
    try:
        if name == "search_menu":
            return {"menu_matches": shop.search(str(args.get("query") or ""))}
        if name == "get_item_options":
            return {"item_options": shop.options(_text(args, "item_id") or "")}
        if name == "check_store_hours":
            stores = shop.stores(_text(args, "store_id", False), _text(args, "address", False))
            return {"store_hours": stores, "now": shop.now().strftime("%H:%M")}
        if name == "quote_order":
            items = args.get("items")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ShopError("bad_arguments", "items must be a list of {item_id, quantity, ...}")
            quote = shop.quote(_text(args, "address") or "", items, str(args.get("payment") or "default"),
                               _text(args, "store_id", False))
            return {"order_quote": quote}
        if name == "place_order":
            if not idempotency_key:
                raise ShopError("bad_arguments", "place_order needs an idempotency key")
            return {"placed_order": shop.place(_text(args, "quote_id") or "", idempotency_key)}
        if name == "get_order_status":
            return {"order_status": shop.order(_text(args, "order_id") or "")}
        raise ShopError("unknown_tool", f"there is no tool {name!r}", tools=[t["name"] for t in TOOLS])
    except ShopError as refusal:
        return refusal.as_result()
