"""``fit``: a ledger row's values made to fit their columns, and what changed named in
``anomalies`` - and a row that already fits left exactly as it is; then what SQLite holds of
its NULLs and booleans."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from oneplan.metering.ledger import INT_MAX, LEDGER_DEFAULTS, fit
from oneplan.store.db import Database


def _row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "chatcmpl-1", "ts": 1.7e9, "user_id": 1, "key_id": "key_1", "protocol": "openai", "model": "m1",
        "provider": "p1", "stream": False, "status": "ok", "http_status": 200, "weight": 1, "latency_ms": 2.5,
    }
    return {**LEDGER_DEFAULTS, **base, **values}


def test_a_row_that_fits_is_left_as_it_is() -> None:
    row = _row(model="m" * 200, input_tokens=INT_MAX, completion="text\twith\nlines")
    assert fit(dict(row)) == row


def test_text_that_does_not_fit_its_column_is_cut_or_cleaned_and_named() -> None:
    row = fit(_row(model="m" * 201, provider="a\x00b", key_id=12345, error_class="E" * 61, completion="done\x00"))
    assert row["model"] == "m" * 200
    assert (row["provider"], row["key_id"], row["error_class"], row["completion"]) == ("ab", "12345", "E" * 60, "done")
    assert set(str(row["anomalies"]).split("; ")) == {
        "model truncated", "provider NUL removed", "error_class truncated", "completion NUL removed",
    }


def test_numbers_that_do_not_fit_their_column_are_clamped_and_named() -> None:
    row = fit(_row(input_tokens=INT_MAX + 1, output_tokens=-3, cached_tokens="many", cost=math.inf, latency_ms=float("nan")))
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (INT_MAX, 0, 0)
    assert (row["cost"], row["latency_ms"]) == (0.0, 0.0)
    assert set(str(row["anomalies"]).split("; ")) == {
        "input_tokens clamped", "output_tokens clamped", "cached_tokens clamped", "cost clamped", "latency_ms clamped",
    }


def test_a_rows_nulls_and_booleans_reach_sqlite_as_null_and_integers(tmp_path: Path) -> None:
    """``store/db.py`` registers sqlite3 adapters for None and bool (a speed-up): what is stored
    must stay exactly what sqlite3 stores without them."""
    db = Database.open(tmp_path)
    row = fit(_row(id="chatcmpl-null", stream=True, ttft_ms=None, error_class=None, completion=None))
    other = fit(_row(id="chatcmpl-false", stream=False))
    db.insert_ledger([row, other])
    with sqlite3.connect(tmp_path / "oneplan.db") as conn:
        got = conn.execute(
            "SELECT id, stream, typeof(stream), typeof(ttft_ms), typeof(error_class), typeof(completion) "
            "FROM ledger ORDER BY id"
        ).fetchall()
    assert got == [
        ("chatcmpl-false", 0, "integer", "null", "null", "null"),
        ("chatcmpl-null", 1, "integer", "null", "null", "null"),
    ]
