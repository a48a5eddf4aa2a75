"""The scripts the tests' models play, beside the example's own ``happy_path``."""

from __future__ import annotations

from examples.one_sentence_order.orders import LATTES, quote_id
from examples.one_sentence_order.script import Script, Turn

FLAT_WHITES = [{"item_id": "flat_white", "quantity": 2, "size": "large", "milk": "oat"}]
DONE = "Done: your coffee is on its way."


def sold_out() -> Script:
    """Flat whites asked for, sold out at the store: the model takes the latte it is offered."""
    return Script((
        Turn.make(None, ("search_menu", {"query": "flat white"}), ("check_store_hours", {"address": "office"})),
        Turn.make('"menu_matches"', ("get_item_options", {"item_id": "flat_white"})),
        Turn.make('"item_options"', ("quote_order", {"address": "office", "items": FLAT_WHITES})),
        Turn.make('"sold_out"', ("quote_order", {"address": "office", "items": LATTES}),
                  text="Flat whites are sold out; getting lattes instead."),
        Turn.make('"order_quote"', ("place_order", {"quote_id": quote_id("office", LATTES)})),
        Turn.make('"placed_order"', text=DONE),
    ))


def closed_store() -> Script:
    """The customer named a store that is closed: the model takes the open one it is offered,
    or, when none is open, says so and stops."""
    return Script((
        Turn.make(None, ("quote_order", {"address": "office", "items": LATTES, "store_id": "downtown"})),
        Turn.make('"store_closed"', ("quote_order", {"address": "office", "items": LATTES, "store_id": "airport"}),
                  text="Downtown is still closed; ordering from the Airport store."),
        Turn.make('"alternatives": []', text="Sorry: no store that delivers to the office is open now."),
        Turn.make('"order_quote"', ("place_order", {"quote_id": quote_id("office", LATTES, store_id="airport")})),
        Turn.make('"placed_order"', text=DONE),
    ))


def ambiguous() -> Script:
    """No address in the sentence: one question, then the order (or a stop without an answer)."""
    milky = [{"item_id": "latte", "quantity": 2, "milk": "oat"}]
    return Script((
        Turn.make(None, ("ask_user", {"question": "Deliver to home or to the office?"})),
        Turn.make('"no_answer"', text="I need to know where to deliver, so I did not order."),
        Turn.make('"user_answer"', ("quote_order", {"address": "office", "items": milky})),
        Turn.make('"order_quote"', ("place_order", {"quote_id": quote_id("office", milky)})),
        Turn.make('"placed_order"', text=DONE),
    ))
