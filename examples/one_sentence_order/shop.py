"""The coffee shop behind the example: one SQLite file with the menu, stores, addresses, payment
methods, quotes and orders.

Money is in cents. Time comes from an injected clock, so opening hours can be tested. A quote's id
is a hash of what was quoted, so the same request quotes the same id (a scripted model can name
it). Placing an order takes an idempotency key: the same key always returns the one order it made.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS stores (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, opens TEXT NOT NULL, closes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS addresses (label TEXT PRIMARY KEY, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    address TEXT NOT NULL REFERENCES addresses(label), store_id TEXT NOT NULL REFERENCES stores(id),
    fee_cents INTEGER NOT NULL, minutes INTEGER NOT NULL, PRIMARY KEY (address, store_id));
CREATE TABLE IF NOT EXISTS menu (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price_cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS options (
    item_id TEXT NOT NULL REFERENCES menu(id), kind TEXT NOT NULL, value TEXT NOT NULL,
    delta_cents INTEGER NOT NULL, is_default INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (item_id, kind, value));
CREATE TABLE IF NOT EXISTS sold_out (
    store_id TEXT NOT NULL REFERENCES stores(id), item_id TEXT NOT NULL REFERENCES menu(id),
    PRIMARY KEY (store_id, item_id));
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, is_default INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS quotes (
    id TEXT PRIMARY KEY, body TEXT NOT NULL, total_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, quote_id TEXT NOT NULL,
    store_id TEXT NOT NULL, address TEXT NOT NULL, payment_id TEXT NOT NULL, lines TEXT NOT NULL,
    subtotal_cents INTEGER NOT NULL, delivery_fee_cents INTEGER NOT NULL,
    total_cents INTEGER NOT NULL, eta_minutes INTEGER NOT NULL, created_at TEXT NOT NULL);
"""

_DRINK_OPTIONS = [
    ("size", "small", 0, 0), ("size", "medium", 50, 1), ("size", "large", 100, 0),
    ("milk", "whole", 0, 1), ("milk", "skim", 0, 0), ("milk", "oat", 60, 0), ("milk", "almond", 60, 0),
    ("extra", "extra_shot", 80, 0), ("extra", "vanilla_syrup", 50, 0),
]
SEED: dict[str, list[tuple[Any, ...]]] = {
    "stores": [("downtown", "Downtown", "07:00", "20:00"), ("airport", "Airport", "05:00", "23:00")],
    "addresses": [("office", "1 Market St, 5th floor"), ("home", "22 Elm Road")],
    "deliveries": [
        ("office", "downtown", 199, 20), ("office", "airport", 499, 45), ("home", "downtown", 299, 30),
    ],
    "menu": [
        ("latte", "Latte", "coffee", 450), ("flat_white", "Flat White", "coffee", 420),
        ("cappuccino", "Cappuccino", "coffee", 430), ("americano", "Americano", "coffee", 350),
        ("croissant", "Butter Croissant", "bakery", 300),
    ],
    "payments": [("card_visa_4242", "Visa ending 4242", 1), ("card_amex_1005", "Amex ending 1005", 0)],
}


class ShopError(Exception):
    """An expected refusal (sold out, closed, unknown id): the tool answers it as an error."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    def as_result(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


def money(cents: int) -> str:
    return f"{cents / 100:.2f}"


class Shop:
    def __init__(self, path: str | Path, now: Callable[[], datetime] = datetime.now) -> None:
        self.path = str(path)
        self.now = now
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)
        if self.db.execute("SELECT COUNT(*) FROM stores").fetchone()[0] == 0:
            self._seed()

    def close(self) -> None:
        self.db.close()

    def _seed(self) -> None:
        with self.db:
            self.db.execute("BEGIN")
            for table, rows in SEED.items():
                marks = ",".join("?" * len(rows[0]))
                self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            for item_id, _name, category, _price in SEED["menu"]:
                if category == "coffee":
                    self.db.executemany(
                        "INSERT INTO options VALUES (?, ?, ?, ?, ?)",
                        [(item_id, *option) for option in _DRINK_OPTIONS],
                    )

    # -- set-up for scenarios ------------------------------------------------------------------

    def set_sold_out(self, item_id: str, store_id: str, sold_out: bool = True) -> None:
        sql = "INSERT OR IGNORE INTO sold_out VALUES (?, ?)" if sold_out else (
            "DELETE FROM sold_out WHERE store_id = ? AND item_id = ?")
        self.db.execute(sql, (store_id, item_id))

    # -- reading -------------------------------------------------------------------------------

    def _item(self, item_id: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM menu WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            known = [r["id"] for r in self.db.execute("SELECT id FROM menu ORDER BY id")]
            raise ShopError("unknown_item", f"there is no menu item {item_id!r}", known_items=known)
        return row

    def _sold_out_at(self, item_id: str) -> list[str]:
        rows = self.db.execute("SELECT store_id FROM sold_out WHERE item_id = ? ORDER BY store_id", (item_id,))
        return [r["store_id"] for r in rows]

    def search(self, query: str) -> list[dict[str, Any]]:
        words = [w.lower().rstrip("s") for w in query.replace(",", " ").split() if len(w) > 1]
        found = []
        for row in self.db.execute("SELECT * FROM menu ORDER BY category, name"):
            text = f"{row['id']} {row['name']} {row['category']}".lower().replace("_", " ")
            if not words or any(w in text for w in words):
                found.append({
                    "item_id": row["id"], "name": row["name"], "category": row["category"],
                    "price": money(row["price_cents"]), "unavailable_at": self._sold_out_at(row["id"]),
                })
        return found

    def options(self, item_id: str) -> dict[str, Any]:
        item = self._item(item_id)
        kinds: dict[str, dict[str, str]] = {}
        defaults: dict[str, str] = {}
        for row in self.db.execute("SELECT * FROM options WHERE item_id = ? ORDER BY rowid", (item_id,)):
            kinds.setdefault(row["kind"], {})[row["value"]] = "+" + money(row["delta_cents"])
            if row["is_default"]:
                defaults[row["kind"]] = row["value"]
        return {"item_id": item_id, "name": item["name"], "price": money(item["price_cents"]),
                "sizes": kinds.get("size", {}), "milk": kinds.get("milk", {}),
                "extras": kinds.get("extra", {}), "defaults": defaults}

    def _open(self, store: sqlite3.Row) -> bool:
        now = self.now().strftime("%H:%M")
        return bool(store["opens"] <= now < store["closes"])

    def stores(self, store_id: str | None = None, address: str | None = None) -> list[dict[str, Any]]:
        if address is not None:
            self._address(address)
            rows = self.db.execute(
                "SELECT s.*, d.fee_cents, d.minutes FROM stores s JOIN deliveries d ON d.store_id = s.id "
                "WHERE d.address = ? ORDER BY d.fee_cents", (address,)).fetchall()
        else:
            rows = self.db.execute(
                "SELECT *, NULL AS fee_cents, NULL AS minutes FROM stores ORDER BY id").fetchall()
        if store_id is not None:
            rows = [r for r in rows if r["id"] == store_id]
            if not rows:
                raise ShopError("unknown_store", f"no store {store_id!r}" + (
                    f" delivers to {address!r}" if address else ""))
        out = []
        for r in rows:
            entry = {"store_id": r["id"], "name": r["name"], "hours": f"{r['opens']}-{r['closes']}",
                     "open_now": self._open(r)}
            if r["fee_cents"] is not None:
                entry |= {"delivery_fee": money(r["fee_cents"]), "eta_minutes": r["minutes"]}
            out.append(entry)
        return out

    def _address(self, label: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM addresses WHERE label = ?", (label,)).fetchone()
        if row is None:
            known = [r["label"] for r in self.db.execute("SELECT label FROM addresses ORDER BY label")]
            raise ShopError("unknown_address", f"no saved address {label!r}", saved_addresses=known)
        return row

    def _payment(self, payment: str) -> sqlite3.Row:
        if payment in ("", "default"):
            row = self.db.execute("SELECT * FROM payments WHERE is_default = 1").fetchone()
        else:
            row = self.db.execute("SELECT * FROM payments WHERE id = ?", (payment,)).fetchone()
        if row is None:
            known = [r["id"] for r in self.db.execute("SELECT id FROM payments ORDER BY id")]
            raise ShopError("unknown_payment", f"no payment method {payment!r}", payment_methods=["default", *known])
        return row

    def profile(self) -> dict[str, Any]:
        return {
            "addresses": {r["label"]: r["line"] for r in self.db.execute("SELECT * FROM addresses")},
            "payments": {r["id"]: r["label"] + (" (default)" if r["is_default"] else "")
                         for r in self.db.execute("SELECT * FROM payments")},
        }

    # -- quoting -------------------------------------------------------------------------------

    def _line(self, store_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        item = self._item(str(spec.get("item_id", "")))
        quantity = spec.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 20:
            raise ShopError("bad_quantity", f"quantity must be a whole number from 1 to 20, not {quantity!r}")
        rows = self.db.execute("SELECT * FROM options WHERE item_id = ?", (item["id"],)).fetchall()
        chosen: dict[str, Any] = {}
        price = item["price_cents"]
        for kind in ("size", "milk"):
            values = {r["value"]: r for r in rows if r["kind"] == kind}
            wanted = spec.get(kind)
            if not values:
                if wanted:
                    raise ShopError("unknown_option", f"{item['name']} has no {kind} choice")
                continue
            if wanted is None:
                wanted = next(v for v, r in values.items() if r["is_default"])
            if wanted not in values:
                raise ShopError("unknown_option", f"{item['name']} has no {kind} {wanted!r}",
                                choices=sorted(values))
            chosen[kind] = wanted
            price += values[wanted]["delta_cents"]
        extras = spec.get("extras") or []
        known = {r["value"]: r for r in rows if r["kind"] == "extra"}
        for extra in extras:
            if extra not in known:
                raise ShopError("unknown_option", f"{item['name']} has no extra {extra!r}", choices=sorted(known))
            price += known[extra]["delta_cents"]
        if store_id in self._sold_out_at(item["id"]):
            alternatives = [
                {"item_id": r["id"], "name": r["name"], "price": money(r["price_cents"])}
                for r in self.db.execute("SELECT * FROM menu WHERE category = ? AND id != ? ORDER BY id",
                                         (item["category"], item["id"]))
                if store_id not in self._sold_out_at(r["id"])
            ]
            raise ShopError("sold_out", f"{item['name']} is sold out at this store today",
                            item_id=item["id"], store_id=store_id, alternatives=alternatives)
        return {"item_id": item["id"], "name": item["name"], "quantity": quantity, **chosen,
                "extras": sorted(extras), "unit_price": money(price), "line_total": money(price * quantity),
                "_cents": price * quantity}

    def quote(self, address: str, items: list[dict[str, Any]], payment: str = "default",
              store_id: str | None = None) -> dict[str, Any]:
        self._address(address)
        pay = self._payment(payment)
        if not items:
            raise ShopError("empty_order", "an order needs at least one item")
        stores = self.stores(address=address)
        if not stores:
            raise ShopError("no_delivery", f"no store delivers to {address!r}")
        if store_id:
            store = next((s for s in stores if s["store_id"] == store_id), None)
        else:  # the cheapest store open now, or the cheapest of all to say it is closed
            store = next((s for s in stores if s["open_now"]), stores[0])
        if store is None:
            raise ShopError("no_delivery", f"store {store_id!r} does not deliver to {address!r}",
                            stores=[s["store_id"] for s in stores])
        if not store["open_now"]:
            raise ShopError(
                "store_closed", f"{store['name']} is closed now (open {store['hours']})",
                store_id=store["store_id"], alternatives=[s for s in stores if s["open_now"]])
        lines = [self._line(store["store_id"], dict(spec)) for spec in items]
        subtotal = sum(line.pop("_cents") for line in lines)
        fee = round(float(store["delivery_fee"]) * 100)
        body = {"store_id": store["store_id"], "store": store["name"], "address": address,
                "payment": {"id": pay["id"], "label": pay["label"]}, "lines": lines,
                "subtotal": money(subtotal), "delivery_fee": money(fee), "total": money(subtotal + fee),
                "currency": "USD", "eta_minutes": store["eta_minutes"]}
        key = json.dumps({k: body[k] for k in ("store_id", "address", "payment", "lines")}, sort_keys=True)
        body = {"quote_id": "Q-" + hashlib.sha256(key.encode()).hexdigest()[:10].upper(), **body}
        self.db.execute("INSERT OR REPLACE INTO quotes VALUES (?, ?, ?, ?)",
                        (body["quote_id"], json.dumps(body), subtotal + fee, self.now().isoformat()))
        return body

    def get_quote(self, quote_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM quotes WHERE id = ?", (quote_id,)).fetchone()
        return json.loads(row["body"]) if row else None

    # -- ordering ------------------------------------------------------------------------------

    def place(self, quote_id: str, idempotency_key: str) -> dict[str, Any]:
        """Place a quoted order, once per ``idempotency_key``: a replay returns the same order."""
        existing = self._order_by_key(idempotency_key)
        if existing is not None:
            return existing | {"replayed": True}
        quote = self.get_quote(quote_id)
        if quote is None:
            raise ShopError("unknown_quote", f"no quote {quote_id!r}: get one with quote_order first")
        store = self.stores(store_id=quote["store_id"], address=quote["address"])[0]
        if not store["open_now"]:
            raise ShopError("store_closed", f"{store['name']} closed since the quote (open {store['hours']})")
        for line in quote["lines"]:
            if quote["store_id"] in self._sold_out_at(line["item_id"]):
                raise ShopError("sold_out", f"{line['name']} sold out since the quote", item_id=line["item_id"])
        order_id = "O-" + uuid.uuid4().hex[:8].upper()
        cents = lambda text: round(float(text) * 100)  # noqa: E731
        try:
            self.db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, idempotency_key, quote_id, quote["store_id"], quote["address"],
                 quote["payment"]["id"], json.dumps(quote["lines"]), cents(quote["subtotal"]),
                 cents(quote["delivery_fee"]), cents(quote["total"]), quote["eta_minutes"],
                 self.now().isoformat()))
        except sqlite3.IntegrityError:  # the same key placed concurrently: that order stands
            return self._order_by_key(idempotency_key) | {"replayed": True}  # type: ignore[operator]
        return self.order(order_id)

    def _order_by_key(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT id FROM orders WHERE idempotency_key = ?", (key,)).fetchone()
        return self.order(row["id"]) if row else None

    def order(self, order_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise ShopError("unknown_order", f"no order {order_id!r}")
        placed = datetime.fromisoformat(row["created_at"])
        elapsed = (self.now() - placed) / timedelta(minutes=1)
        eta = row["eta_minutes"]
        status = ("confirmed" if elapsed < 2 else "preparing" if elapsed < eta / 2
                  else "out_for_delivery" if elapsed < eta else "delivered")
        payment = self.db.execute("SELECT label FROM payments WHERE id = ?", (row["payment_id"],)).fetchone()
        return {"order_id": row["id"], "status": status, "store_id": row["store_id"],
                "address": row["address"], "lines": json.loads(row["lines"]),
                "subtotal": money(row["subtotal_cents"]), "delivery_fee": money(row["delivery_fee_cents"]),
                "total": money(row["total_cents"]), "currency": "USD", "payment": payment["label"],
                "eta_minutes": eta, "placed_at": row["created_at"]}

    def orders(self) -> list[dict[str, Any]]:
        return [self.order(r["id"]) for r in self.db.execute("SELECT id FROM orders ORDER BY created_at")]
