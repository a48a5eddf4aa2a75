"""The request metrics are counted in plain numbers in one process (``LocalRequests``) and in
prometheus-client's objects when workers share them (``SharedRequests``): for the same requests
both expose the same series, to the sample - buckets on their boundaries, failures without
tokens, refusals by window."""

from __future__ import annotations

import random
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from oneplan.server.metrics import LATENCY_BUCKETS, TTFT_BUCKETS, LocalRequests, SharedRequests


def rows(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        status = rng.choice(["ok", "ok", "ok", "failed", "cancelled", "refused"])
        model = rng.choice(["m1", "m2"])
        if status == "refused":
            out.append({"status": status, "model": model, "latency_ms": 1.0,
                        "error_class": rng.choice(["quota:5h", "quota:week", None])})
            continue
        # Latencies on bucket boundaries too: a value equal to a bound is counted in that bucket.
        latency = rng.choice([*LATENCY_BUCKETS, 0.0001, 0.07, 3.3, 700.0]) * 1000.0
        ttft = rng.choice([None, *(b * 1000.0 for b in TTFT_BUCKETS), 0.3, 120_000.0])
        out.append({
            "status": status, "model": model, "provider": rng.choice(["a", "b", None]), "latency_ms": latency,
            "ttft_ms": ttft, "input_tokens": rng.randrange(0, 3000), "output_tokens": rng.randrange(0, 500),
            "cached_tokens": rng.choice([0, 100]), "reasoning_tokens": rng.choice([0, 7]),
            "cache_write_tokens": rng.choice([0, None, 40]),
        })
    return out


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition without the ``_created`` samples (when each series was first seen)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_both_counts_expose_the_same_series() -> None:
    for seed in range(5):
        local = LocalRequests()
        local_registry = CollectorRegistry()
        local_registry.register(local)
        shared_registry = CollectorRegistry()
        shared = SharedRequests(shared_registry)
        for row in rows(seed, 400):
            local.observe(row)  # type: ignore[arg-type]
            shared.observe(row)  # type: ignore[arg-type]
        assert exposition(local_registry) == exposition(shared_registry)


def test_a_series_says_when_it_began() -> None:
    local = LocalRequests()
    registry = CollectorRegistry()
    registry.register(local)
    local.observe({"status": "ok", "model": "m", "provider": "p", "latency_ms": 5.0, "ttft_ms": 1.0,  # type: ignore[typeddict-item]
                   "input_tokens": 3, "output_tokens": 4, "cached_tokens": 0, "reasoning_tokens": 0})
    text = generate_latest(registry).decode()
    for name in ("oneplan_requests_created", "oneplan_request_duration_seconds_created", "oneplan_tokens_created"):
        assert f"{name}{{" in text
    assert 'oneplan_tokens_total{kind="output",model="m",provider="p"} 4.0' in text
    assert 'oneplan_request_duration_seconds_bucket{le="0.05",model="m",provider="p"} 1.0' in text
