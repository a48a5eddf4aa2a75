"""The example's known order, as a script a scripted model plays (see ``script.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from examples.one_sentence_order.script import Script, Turn
from examples.one_sentence_order.shop import Shop

SENTENCE = "order two large lattes to the office, oat milk, pay with my default card"
REFUSED = "The shop could not take this order as asked, so I stopped."
LATTES = [{"item_id": "latte", "quantity": 2, "size": "large", "milk": "oat"}]


def quote_id(address: str, items: list[dict[str, Any]], payment: str = "default", store_id: str | None = None) -> str:
    """The id the shop gives this quote (ids are hashes of what is quoted, whatever the time)."""
    shop = Shop(":memory:", now=lambda: datetime(2026, 12, 1, 12, 0))
    try:
        return str(shop.quote(address, items, payment, store_id)["quote_id"])
    finally:
        shop.close()


def happy_path() -> Script:
    """SENTENCE, step by step: look up, check the store, price, pay, and say so; or stop when the
    shop refuses the quote, or when the customer does not approve the total."""
    return Script((
        Turn.make(None, ("search_menu", {"query": "latte"}), ("check_store_hours", {"address": "office"})),
        Turn.make('"menu_matches"', ("get_item_options", {"item_id": "latte"})),
        Turn.make('"item_options"', ("quote_order", {"address": "office", "items": LATTES, "payment": "default"})),
        Turn.make('"error"', text=REFUSED),  # the shop refused the quote (closed, sold out, ...)
        Turn.make('"order_quote"', ("place_order", {"quote_id": quote_id("office", LATTES)}),
                  text="Two large oat lattes from Downtown; paying with the default card."),
        Turn.make('"not_confirmed"', text="Understood: I did not place the order."),
        Turn.make('"placed_order"', text="Done: two large oat lattes are on their way to the office."),
    ))
