"""``fit``: a ledger row's values made to fit their columns, and what changed named in
``anomalies`` - and a row that already fits left exactly as it is."""

from __future__ import annotations

import math

from oneplan.metering.ledger import INT_MAX, LEDGER_DEFAULTS, fit


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
