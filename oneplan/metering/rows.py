"""The ledger row: one per admitted (or refused) request, as the settlement builds it and the
ledger, the counters, metrics and alerts read it. Columns are ``store/schema.py``'s ``ledger``;
keys starting with ``_`` travel in the journal only (a replica replaying the row needs them)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class Status(StrEnum):
    """How a request ended. A ``str``: rows, the journal and the database hold the value."""

    OK = "ok"  # answered; charged its usage
    FAILED = "failed"  # not answered (upstream or oneplan failed): charged nothing
    CANCELLED = "cancelled"  # the client went away: charged what the upstream produced
    REFUSED = "refused"  # refused at admission (a quota): nothing was reserved


class LedgerRow(TypedDict, total=False):
    id: str  # the request id (the answer's id)
    ts: float  # when the request arrived (unix seconds)
    user_id: int
    key_id: str
    protocol: str
    model: str
    provider: str | None
    upstream_model: str | None
    stream: bool
    status: Status
    http_status: int
    error_class: str | None
    weight: int  # requests charged against request windows
    input_tokens: int  # every input class: uncached, cache reads, cache writes
    output_tokens: int  # reasoning included
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: float
    credits: float  # plan credits before the peak multiplier
    multiplier: float  # the peak multiplier it was charged under
    latency_ms: float
    ttft_ms: float | None
    attempts: int
    prompt: str | None  # only with server.store_prompts
    completion: str | None
    anomalies: str | None
    _field: str  # the counters' in-flight entry (Redis), for a replica replaying the row
    _res: str  # that entry's value


__all__ = ["LedgerRow", "Status"]
