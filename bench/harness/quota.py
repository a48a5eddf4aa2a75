"""Checking that plan quotas stay exact under concurrency and across workers.

Why it belongs in the benchmark: the cheapest way to go fast is to check quotas loosely (a
per-worker counter, a read-then-write race). A key on a plan allowing N requests per 5 hours
gets 2N concurrent requests; the only right answer is exactly N successes and N 429s - and the
upstream must have seen exactly N, since a rejected request must never be forwarded.
wrk cannot send an exact number of requests, so this uses a thread pool of keep-alive
connections (stdlib only); the count matters here, not the speed.
"""

from __future__ import annotations

import http.client
import threading
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from .gateways import ONEPLAN_CONFIG


@dataclass(frozen=True)
class QuotaResult:
    """Outcome of firing 2N requests at a plan that allows N."""

    workers: int
    allowed: int
    sent: int
    statuses: dict[int, int]
    forwarded: int

    @property
    def exact(self) -> bool:
        return (self.statuses.get(200, 0) == self.allowed
                and self.statuses.get(429, 0) == self.sent - self.allowed
                and self.forwarded == self.allowed)

    def describe(self) -> str:
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(self.statuses.items()))
        return (f"workers={self.workers}: sent {self.sent} at a plan allowing {self.allowed} -> "
                f"{codes}; upstream saw {self.forwarded}")


def quota_limit() -> int:
    """requests_per_5h of [plans.quota] in oneplan.bench.toml."""
    with ONEPLAN_CONFIG.open("rb") as f:
        return int(tomllib.load(f)["plans"]["quota"]["requests_per_5h"])


def fire(url: str, auth: str, body: bytes, total: int, concurrency: int = 32) -> Counter[int]:
    """Send exactly `total` POSTs over `concurrency` connections; count the status codes."""
    parts = urlsplit(url)
    local = threading.local()
    headers = {"Content-Type": "application/json", "Authorization": auth}

    def one(_: int) -> int:
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (http.client.HTTPException, OSError):
            # No retry: the request may have been admitted, and a retry would hide that.
            conn.close()
            local.conn = None
            return -1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return Counter(pool.map(one, range(total)))
