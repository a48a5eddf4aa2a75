"""The example end to end: ``python -m examples.one_sentence_order`` through a real ``oneplan
serve``, on the scripted local checkpoints and on fake DashScope and Anthropic upstreams playing
the same script. What a user depends on: the order row in the shop, one ledger row per model
call, no second order on a replay, and a clear message (never a traceback) when it cannot order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from examples.one_sentence_order import tools
from examples.one_sentence_order.orders import LATTES, REFUSED, SENTENCE, happy_path, quote_id
from examples.one_sentence_order.script import Script, Turn
from examples.one_sentence_order.shop import Shop
from tests.examples import scenarios
from tests.examples.conftest import Run, Stack, orders

NOW = "2026-12-01T09:30"
EXPECTED = {  # two large oat lattes (4.50 + 1.00 + 0.60 each) from Downtown to the office
    "quote_id": quote_id("office", LATTES), "store_id": "downtown", "address": "office",
    "payment_id": "card_visa_4242", "subtotal_cents": 1220, "delivery_fee_cents": 199,
    "total_cents": 1419, "eta_minutes": 20,
}
LINES = '[{"item_id": "latte", "name": "Latte", "quantity": 2, "size": "large", "milk": "oat", "extras": [], ' \
        '"unit_price": "6.10", "line_total": "12.20"}]'
HAPPY_CALLS = 5  # search + hours (one turn, two calls), options, quote, pay, the closing sentence

BACKENDS = [
    ("tiny-order-json", "openai"),  # local engine, Qwen JSON tool calls
    ("tiny-order-xml", "openai"),  # local engine, Qwen XML tool calls
    ("tiny-order-xml", "anthropic"),
    ("qwen3.7-plus", "openai"),  # DashScope dialect
    ("kimi-k2.5", "anthropic"),  # Anthropic dialect, passed through
]


def row_of(order: dict[str, object]) -> dict[str, object]:
    return {k: order[k] for k in EXPECTED}


@pytest.mark.parametrize(("model", "protocol"), BACKENDS, ids=[f"{m}-{p}" for m, p in BACKENDS])
def test_one_sentence_places_one_order(stack: Stack, run: Callable[..., Run], tmp_path: Path,
                                       model: str, protocol: str) -> None:
    stack.play(happy_path())
    user = f"u-{model}-{protocol}"
    key = stack.user(user)
    args = ("--model", model, "--protocol", protocol, "--now", NOW, "--idempotency-key", "k-1", SENTENCE)
    first = run(key, *args, process=model == "tiny-order-json")  # once as the command itself
    assert first.code == 0, first.out + first.err
    assert "-> search_menu" in first.out and "-> check_store_hours" in first.out  # one turn, two calls
    assert "Total USD" in first.out and "14.19" in first.out and "on their way" in first.out
    (order,) = orders(tmp_path / "shop.db")
    assert row_of(order) == EXPECTED and order["lines"] == LINES
    assert stack.model_calls(user) == {model: HAPPY_CALLS}

    if model in ("tiny-order-json", "qwen3.7-plus"):  # the whole run again, same idempotency key
        again = run(key, *args)
        assert again.code == 0 and "already placed" in again.out
        assert [o["id"] for o in orders(tmp_path / "shop.db")] == [order["id"]]
        assert stack.model_calls(user) == {model: 2 * HAPPY_CALLS}


def test_a_replayed_place_order_makes_no_second_order(tmp_path: Path) -> None:
    shop = Shop(tmp_path / "shop.db", now=lambda: datetime(2026, 12, 1, 9, 30))
    quote = tools.call(shop, "quote_order", {"address": "office", "items": LATTES})["order_quote"]
    first = tools.call(shop, "place_order", {"quote_id": quote["quote_id"]}, idempotency_key="k")
    replay = tools.call(shop, "place_order", {"quote_id": quote["quote_id"]}, idempotency_key="k")
    other = tools.call(shop, "place_order", {"quote_id": quote["quote_id"]}, idempotency_key="k2")
    assert replay["placed_order"]["order_id"] == first["placed_order"]["order_id"]
    assert replay["placed_order"]["replayed"] is True
    assert other["placed_order"]["order_id"] != first["placed_order"]["order_id"]
    assert len(shop.orders()) == 2
    shop.close()


@pytest.mark.parametrize("model", ["tiny-sold-out", "qwen3.7-plus", "kimi-k2.5"])
def test_a_sold_out_item_is_replaced_by_an_offered_alternative(
        stack: Stack, run: Callable[..., Run], tmp_path: Path, model: str) -> None:
    """The local checkpoint plays the same script: its answer follows the shop's."""
    shop = Shop(tmp_path / "shop.db")
    shop.set_sold_out("flat_white", "downtown")
    shop.close()
    stack.play(scenarios.sold_out())
    protocol = "anthropic" if model == "kimi-k2.5" else "openai"
    result = run(stack.user(f"sold-{model}"), "--model", model, "--protocol", protocol, "--now", NOW,
                 "order two large flat whites to the office, oat milk, default card")
    assert result.code == 0, result.out
    assert "sold_out: Flat White is sold out" in result.out  # the tool's error, read by the model
    (order,) = orders(tmp_path / "shop.db")
    assert row_of(order) == EXPECTED


def test_a_closed_store_is_replaced_by_an_open_one(stack: Stack, run: Callable[..., Run], tmp_path: Path) -> None:
    stack.play(scenarios.closed_store())
    result = run(stack.user("closed"), "--model", "kimi-k2.5", "--protocol", "anthropic",
                 "--now", "2026-12-01T06:30", "two large oat lattes to the office from downtown")
    assert result.code == 0, result.out
    assert "store_closed: Downtown is closed now (open 07:00-20:00)" in result.out
    (order,) = orders(tmp_path / "shop.db")
    assert (order["store_id"], order["delivery_fee_cents"], order["total_cents"]) == ("airport", 499, 1719)


def test_no_open_store_stops_with_a_clear_message(stack: Stack, run: Callable[..., Run], tmp_path: Path) -> None:
    stack.play(scenarios.closed_store())
    result = run(stack.user("night"), "--model", "qwen3.7-plus", "--now", "2026-12-01T04:00",
                 "two large oat lattes to the office from downtown")
    assert result.code == 1
    assert result.out.rstrip().endswith(
        "Sorry: no store that delivers to the office is open now.\nNo order was placed.")
    assert orders(tmp_path / "shop.db") == []

    local = run(stack.user("night-local"), "--model", "tiny-order-xml", "--now", "2026-12-01T04:00", SENTENCE)
    assert local.code == 1 and "store_closed: Downtown is closed now" in local.out
    assert local.out.rstrip().endswith(f"{REFUSED}\nNo order was placed.")
    assert orders(tmp_path / "shop.db") == []


def test_one_clarifying_question_when_the_address_is_missing(
        stack: Stack, run: Callable[..., Run], tmp_path: Path) -> None:
    stack.play(scenarios.ambiguous())
    key = stack.user("asker")
    answered = run(key, "--model", "qwen3.7-plus", "--now", NOW, "--answer", "office",
                   "two lattes with oat milk, default card")
    assert answered.code == 0, answered.out
    assert "? Deliver to home or to the office?" in answered.out
    (order,) = orders(tmp_path / "shop.db")
    assert (order["address"], order["total_cents"]) == ("office", 2 * (450 + 50 + 60) + 199)

    unanswered = run(key, "--model", "qwen3.7-plus", "--now", NOW, "two lattes with oat milk, default card")
    assert unanswered.code == 1  # stdin is empty: no answer, no order
    assert "I need to know where to deliver" in unanswered.out
    assert len(orders(tmp_path / "shop.db")) == 1


def test_a_total_above_the_limit_is_paid_only_after_a_yes(
        stack: Stack, run: Callable[..., Run], tmp_path: Path) -> None:
    stack.play(happy_path())
    key = stack.user("careful")
    args = ("--model", "tiny-order-json", "--now", NOW, "--confirm-above", "10", SENTENCE)
    declined = run(key, *args, stdin="n\n")
    assert declined.code == 1
    assert "Pay 14.19 USD (above your limit of 10.00)? [y/N]" in declined.out
    assert "I did not place the order" in declined.out and orders(tmp_path / "shop.db") == []

    approved = run(key, *args, stdin="y\n")
    assert approved.code == 0 and "Receipt O-" in approved.out
    assert len(orders(tmp_path / "shop.db")) == 1


def test_a_refused_request_is_one_clear_line(stack: Stack, run: Callable[..., Run]) -> None:
    key = stack.user("typo")
    unknown = run(key, "--model", "qwen9-ultra", "--now", NOW, SENTENCE, process=True)
    assert unknown.code == 3 and "404" in unknown.err and "qwen9-ultra" in unknown.err
    assert len(unknown.err.strip().splitlines()) == 1
    bad_key = run("sk-op-not-a-key", "--model", "qwen3.7-plus", "--protocol", "anthropic", SENTENCE)
    assert bad_key.code == 3 and "401" in bad_key.err
    nobody = run(key, "--model", "qwen3.7-plus", SENTENCE, "--base-url", "http://127.0.0.1:9")
    assert nobody.code == 3 and "cannot reach oneplan at http://127.0.0.1:9" in nobody.err


def test_a_second_question_is_refused(stack: Stack, run: Callable[..., Run], tmp_path: Path) -> None:
    stack.play(Script((
        Turn.make(None, ("ask_user", {"question": "Home or office?"})),
        Turn.make('"user_answer"', ("ask_user", {"question": "Which milk?"})),
        Turn.make('"no_more_questions"', text="Then I will not guess."),
    )))
    result = run(stack.user("curious"), "--model", "qwen3.7-plus", "--answer", "office", "--answer", "oat", "lattes")
    assert result.code == 1 and "? Home or office?" in result.out and "? Which milk?" not in result.out
    assert "no_more_questions" in result.out and orders(tmp_path / "shop.db") == []
