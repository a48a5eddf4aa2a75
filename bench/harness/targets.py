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
GATEWAY_PEERS = ("portkey", "ccr", "litellm")  # oneplan must out-serve each (not direct, bare)
MAX_GROWTH_BEND = 1.5  # µs/KB from 15 to 60 KB over µs/KB from 1 to 15 KB: linear, not worse


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
        key = ("openai", mode, "small", 32)
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
        key = ("openai", mode, "small", 1)
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
        key = ("openai", mode, "small", 32)
        w1, w2 = run.find("oneplan", key), run.find("oneplan-w2", key)
        scale = w2.rps / w1.rps if w1 and w2 and w1.rps > 0 else None
        checks.append(Check(
            f"oneplan --workers 2 scaling, {mode}, c=32",
            f"{scale:.2f}x" if scale is not None else "-", f">= {MIN_WORKER_SCALING}x",
            _status(None if scale is None else scale >= MIN_WORKER_SCALING)))
    checks += _peer_checks(run)
    checks += _growth_checks(run)
    for q in run.quota:
        checks.append(Check(f"quota exact, workers={q.workers}", q.describe,
                            f"exactly {q.allowed} x 2xx and {q.sent - q.allowed} x 429",
                            _status(q.exact)))
    if not run.quota:
        checks.append(Check("quota exact across workers", "-", "N x 2xx and N x 429", "n/a"))
    return checks


def _peer_checks(run: RunResults) -> list[Check]:
    """oneplan serves more req/s than every peer gateway, per protocol, small and big bodies."""
    out = []
    keys = sorted({s.key for s in run.scenarios if s.target == "oneplan" and s.concurrency == 32
                   and s.size in ("small", "cc60k")})
    for key in keys:
        one = run.find("oneplan", key)
        peers = [p for p in (run.find(t, key) for t in GATEWAY_PEERS) if p is not None]
        if one is None or not peers:
            continue
        best = max(peers, key=lambda p: p.rps)
        ratio = one.rps / best.rps if best.rps > 0 else float("inf")
        out.append(Check(f"oneplan fastest, {' '.join(map(str, key[:3]))} c=32",
                         f"{ratio:.2f}x the fastest peer ({best.target})", "> 1x",
                         _status(ratio > 1)))
    return out


def growth(run: RunResults, target: str, protocol: str, mode: str = "json"
           ) -> tuple[float, float] | None:
    """CPU µs per extra KB of body from cc1k to cc15k and from cc15k to cc60k."""
    kb: dict[str, float] = run.settings.get("body_kb", {})
    conc = run.settings.get("body_concurrency", 32)
    rows = [run.find(target, (protocol, mode, s, conc)) for s in ("cc1k", "cc15k", "cc60k")]
    sizes = [kb.get(f"{protocol}/{s}") for s in ("cc1k", "cc15k", "cc60k")]
    if any(r is None or r.cpu_us_per_req is None for r in rows) or None in sizes:
        return None
    c = [r.cpu_us_per_req for r in rows if r is not None and r.cpu_us_per_req is not None]
    k = [x for x in sizes if x is not None]
    return ((c[1] - c[0]) / (k[1] - k[0]), (c[2] - c[1]) / (k[2] - k[1]))


def _growth_checks(run: RunResults) -> list[Check]:
    out = []
    for protocol in ("openai", "anthropic"):
        g = growth(run, "oneplan", protocol)
        if g is None:
            continue
        low, high = g
        ok = high <= MAX_GROWTH_BEND * max(low, 1.0)
        out.append(Check(f"oneplan CPU grows linearly with the body, {protocol} json",
                         f"{low:.1f} µs/KB (1->15 KB), {high:.1f} µs/KB (15->60 KB)",
                         f"15->60 <= {MAX_GROWTH_BEND}x 1->15", _status(ok)))
    return out
