"""Prometheus metrics: ``GET /metrics``.

Two sources, chosen so that the request path pays almost nothing:

* ``Metrics.observe(row)`` - called once per finished request with its ledger row (from
  ``Gateway.observe``). Requests by model / provider / status, latency and time to first token,
  tokens, quota refusals. The labelled children are looked up once per label set and cached, so
  a request costs a handful of lock-protected additions.
* ``HealthCollector`` - read at scrape time from the router's per-deployment health
  (``routing/health.py``): upstream errors by class, retries, circuit state, requests in flight.
  Nothing is counted twice and nothing is counted on the request path.

Each gateway has its own registry (tests run several in one process). With several uvicorn
workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before starting: the request
metrics are then aggregated across workers by prometheus-client's multiprocess mode, while the
deployment health metrics (which live in each worker's memory) carry the scraped worker's ``pid``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from oneplan.metering.rows import LedgerRow
from oneplan.routing.health import CLOSED, OPEN, Health

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
# "input" holds "cached" (cache reads) and "cache_write"; "output" holds "reasoning".
_TOKEN_KINDS = ("input", "output", "cached", "reasoning", "cache_write")


class HealthCollector(Collector):
    """Deployment health, as it stands when Prometheus scrapes."""

    def __init__(self, health: Health, extra: dict[str, str] | None = None) -> None:
        self.health = health
        self.extra = extra or {}

    def collect(self) -> Iterator[Metric]:
        names = ["provider", "upstream", *self.extra]
        extra = list(self.extra.values())
        errors = CounterMetricFamily(
            "oneplan_upstream_errors", "Failed attempts at a deployment, by error class.",
            labels=[*names, "error"],
        )
        retries = CounterMetricFamily(
            "oneplan_retries", "Attempts that were not a request's first (another deployment or a retry).",
            labels=names,
        )
        state = GaugeMetricFamily(
            "oneplan_circuit_state", "A deployment's circuit: 0 closed, 1 half-open, 2 open.", labels=names
        )
        in_flight = GaugeMetricFamily("oneplan_upstream_in_flight", "Upstream requests in flight.", labels=names)
        open_total = 0
        now = self.health.now()
        for h in self.health:
            labels = [h.provider, h.upstream, *extra]
            for error, count in h.errors.items():
                errors.add_metric([*labels, error], count)
            retries.add_metric(labels, h.retries)
            code = 0 if h.state == CLOSED else 2 if h.state == OPEN and not h.available(now) else 1
            open_total += code == 2
            state.add_metric(labels, code)
            in_flight.add_metric(labels, h.in_flight)
        opened = GaugeMetricFamily(
            "oneplan_open_circuits", "Deployments whose circuit is open now.", labels=list(self.extra)
        )
        opened.add_metric(extra, open_total)
        yield from (errors, retries, state, in_flight, opened)


class LedgerCollector(Collector):
    """The ledger's own health, read at scrape time."""

    def __init__(self, ledger: Any, extra: dict[str, str] | None = None) -> None:
        self.ledger = ledger
        self.extra = extra or {}

    def collect(self) -> Iterator[Metric]:
        names, values = list(self.extra), list(self.extra.values())
        pending = GaugeMetricFamily(
            "oneplan_ledger_pending_rows", "Ledger rows journaled, not yet in the database.", labels=names
        )
        pending.add_metric(values, self.ledger.pending)
        aside = CounterMetricFamily(
            "oneplan_ledger_set_aside_rows", "Ledger rows the database refused, set aside (ledger_dead).",
            labels=names,
        )
        aside.add_metric(values, self.ledger.set_aside)
        yield from (pending, aside)


class Metrics:
    def __init__(self, health: Health) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode the values live in files; the registry only holds the collector.
        self.registry = CollectorRegistry(auto_describe=True)
        own = None if self.multiprocess else self.registry
        self.requests = Counter(
            "oneplan_requests", "Finished requests by model, provider and outcome.",
            ["model", "provider", "status"], registry=own,
        )
        self.latency = Histogram(
            "oneplan_request_duration_seconds", "Whole request, arrival to last byte.",
            ["model", "provider"], buckets=LATENCY_BUCKETS, registry=own,
        )
        self.ttft = Histogram(
            "oneplan_time_to_first_token_seconds", "Arrival to the upstream's first answer byte.",
            ["model", "provider"], buckets=TTFT_BUCKETS, registry=own,
        )
        self.tokens = Counter(
            "oneplan_tokens", "Tokens as the providers reported them, by class (input includes cached and cache_write).", ["model", "provider", "kind"], registry=own,
        )
        self.refusals = Counter(
            "oneplan_quota_refusals", "Requests refused by a plan's quota, by window.", ["model", "window"], registry=own,
        )
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            self.registry.register(HealthCollector(health, {"pid": str(os.getpid())}))
        else:
            self.registry.register(HealthCollector(health))
        self._bound: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def watch_ledger(self, ledger: Any) -> None:
        extra = {"pid": str(os.getpid())} if self.multiprocess else None
        self.registry.register(LedgerCollector(ledger, extra))

    def observe(self, row: LedgerRow) -> None:
        """One finished request (its ledger row). Cheap: cached children, no allocation beyond
        the first request of a label set."""
        status = row["status"]
        model = row["model"]
        if status == "refused":
            window = str(row.get("error_class") or "").partition(":")[2] or "unknown"
            self.refusals.labels(model, window).inc()
            self.requests.labels(model, "", status).inc()
            return
        provider = row.get("provider") or ""
        key = (model, provider, status)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bound[key] = (
                self.requests.labels(model, provider, status),
                self.latency.labels(model, provider),
                self.ttft.labels(model, provider),
                *(self.tokens.labels(model, provider, kind) for kind in _TOKEN_KINDS),
            )
        requests, latency, ttft, t_in, t_out, t_cached, t_reasoning, t_write = bound
        requests.inc()
        latency.observe(row["latency_ms"] / 1000.0)
        if status == "failed":
            return  # a failure carries no tokens (README, "Ledger policy")
        ttft_ms = row.get("ttft_ms")
        if ttft_ms is not None:
            ttft.observe(ttft_ms / 1000.0)
        if row["input_tokens"]:
            t_in.inc(row["input_tokens"])
        if row["output_tokens"]:
            t_out.inc(row["output_tokens"])
        if row["cached_tokens"]:
            t_cached.inc(row["cached_tokens"])
        if row["reasoning_tokens"]:
            t_reasoning.inc(row["reasoning_tokens"])
        if row.get("cache_write_tokens"):
            t_write.inc(row["cache_write_tokens"])

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
