"""The performance targets oneplan must meet, checked against a run's figures.

Why here and not in tests/: these depend on the machine and take minutes; they are a report
the lead reads while optimising, not a gate on every commit. Thresholds are constants so the
report states exactly what was checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from .results import RunResults

MIN_RATIO_VS_LITELLM = 30.0  # at concurrency 32, non-stream and stream
MIN_JSON_RPS = 2000.0  # non-stream, concurrency 32
MIN_STREAM_RPS = 1000.0  # stream, concurrency 32
MAX_ADDED_P50_MS = 1.0  # at concurrency 1
MAX_RSS_MB = 150.0  # after the memory scenario
MIN_MEMORY_REQUESTS = 100_000
MIN_WORKER_SCALING = 1.25  # req/s with 2 workers / req/s with 1, concurrency 32 (2-core box)


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    threshold: str
    status: str  # "PASS", "FAIL" or "n/a"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def evaluate(run: RunResults) -> list[Check]:
    checks: list[Check] = []
    for mode in ("json", "stream"):
        key = (mode, "small", 32)
        one, lite = run.find("oneplan", key), run.find("litellm", key)
        ratio = one.rps / lite.rps if one and lite and lite.rps > 0 else None
        checks.append(Check(
            f"oneplan/LiteLLM req/s, {mode}, c=32",
            f"{ratio:.1f}x" if ratio is not None else "-", f">= {MIN_RATIO_VS_LITELLM:.0f}x",
            _status(None if ratio is None else ratio >= MIN_RATIO_VS_LITELLM)))
        floor = MIN_JSON_RPS if mode == "json" else MIN_STREAM_RPS
        checks.append(Check(
            f"oneplan req/s, {mode}, c=32", f"{one.rps:,.0f}" if one else "-", f">= {floor:,.0f}",
            _status(None if one is None else one.rps >= floor and one.errors == 0)))
    for mode in ("json", "stream"):
        key = (mode, "small", 1)
        one, direct = run.find("oneplan", key), run.find("direct", key)
        added = one.p50_ms - direct.p50_ms if one and direct else None
        checks.append(Check(
            f"oneplan added p50 latency, {mode}, c=1",
            f"{added:.2f} ms" if added is not None else "-", f"<= {MAX_ADDED_P50_MS} ms",
            _status(None if added is None else added <= MAX_ADDED_P50_MS)))
    mem = next((m for m in run.memory if m.target == "oneplan"), None)
    checks.append(Check(
        f"oneplan RSS after {MIN_MEMORY_REQUESTS:,} requests",
        f"{mem.rss_mb:.0f} MB after {mem.requests:,}" if mem else "-", f"<= {MAX_RSS_MB:.0f} MB",
        _status(None if mem is None else mem.rss_mb <= MAX_RSS_MB
                and mem.requests >= MIN_MEMORY_REQUESTS)))
    for mode in ("json", "stream"):
        key = (mode, "small", 32)
        w1, w2 = run.find("oneplan", key), run.find("oneplan-w2", key)
        scale = w2.rps / w1.rps if w1 and w2 and w1.rps > 0 else None
        checks.append(Check(
            f"oneplan --workers 2 scaling, {mode}, c=32",
            f"{scale:.2f}x" if scale is not None else "-", f">= {MIN_WORKER_SCALING}x",
            _status(None if scale is None else scale >= MIN_WORKER_SCALING)))
    for q in run.quota:
        checks.append(Check(f"quota exact, workers={q.workers}", q.describe,
                            f"exactly {q.allowed} x 2xx and {q.sent - q.allowed} x 429",
                            _status(q.exact)))
    if not run.quota:
        checks.append(Check("quota exact across workers", "-", "N x 2xx and N x 429", "n/a"))
    return checks
