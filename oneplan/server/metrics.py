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

import bisect
import math
import os
import time
from collections.abc import Iterator
from typing import Any, TypeVar

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


def _reading(row: LedgerRow) -> tuple[tuple[str, str, str], float, float | None, tuple[int, ...] | None]:
    """What a finished request adds: its labels (model, provider, status), its latency and
    time to first token in seconds, and its tokens by ``_TOKEN_KINDS`` (None: a failure, which
    carries none - README, "Ledger policy")."""
    status = row["status"]
    key = (row["model"], row.get("provider") or "", status)
    latency = row["latency_ms"] / 1000.0
    if status == "failed":
        return key, latency, None, None
    ttft_ms = row.get("ttft_ms")
    tokens = (row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["reasoning_tokens"],
              row.get("cache_write_tokens") or 0)
    return key, latency, None if ttft_ms is None else ttft_ms / 1000.0, tokens


def _refused_window(row: LedgerRow) -> str:
    return str(row.get("error_class") or "").partition(":")[2] or "unknown"


_K = TypeVar("_K", tuple[str, str], tuple[str, str, str])


class _Series:
    """One (model, provider)'s latency, time to first token and tokens: plain numbers, added
    on the event loop's thread."""

    __slots__ = ("created", "latency", "latency_sum", "tokens", "ttft", "ttft_sum")

    def __init__(self) -> None:
        self.created = time.time()
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; then +Inf
        self.latency_sum = 0.0
        self.ttft = [0] * (len(TTFT_BUCKETS) + 1)
        self.ttft_sum = 0.0
        self.tokens = [0] * len(_TOKEN_KINDS)


class LocalRequests(Collector):
    """The request metrics of one process, counted without a lock or a prometheus-client child
    per addition (a request made ten locked additions through them) and read at scrape time."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], list[float]] = {}  # [count, created]
        self.series: dict[tuple[str, str], _Series] = {}
        self.refusals: dict[tuple[str, str], list[float]] = {}  # (model, window): [count, created]
        self._bound: dict[tuple[str, str, str], tuple[list[float], _Series]] = {}

    def observe(self, row: LedgerRow) -> None:
        if row["status"] == "refused":
            _count(self.refusals, (row["model"], _refused_window(row)))
            _count(self.requests, (row["model"], "", "refused"))  # and among requests
            return
        key, latency, ttft, tokens = _reading(row)
        bound = self._bound.get(key)
        if bound is None:
            pair = (key[0], key[1])
            series = self.series.get(pair)
            if series is None:
                series = self.series[pair] = _Series()
            bound = self._bound[key] = (self.requests.setdefault(key, [0, time.time()]), series)
        bound[0][0] += 1
        series = bound[1]
        series.latency[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        series.latency_sum += latency
        if ttft is not None:
            series.ttft[bisect.bisect_left(TTFT_BUCKETS, ttft)] += 1
            series.ttft_sum += ttft
        if tokens is not None:
            counts = series.tokens
            for i, n in enumerate(tokens):
                if n:
                    counts[i] += n

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("oneplan_requests", _REQUESTS_HELP, labels=["model", "provider", "status"])
        for names, (count, created) in list(self.requests.items()):
            requests.add_metric(names, count, created=created)
        latency = Metric("oneplan_request_duration_seconds", _LATENCY_HELP, "histogram")
        ttft = Metric("oneplan_time_to_first_token_seconds", _TTFT_HELP, "histogram")
        tokens = CounterMetricFamily("oneplan_tokens", _TOKENS_HELP, labels=["model", "provider", "kind"])
        for (model, provider), s in list(self.series.items()):
            labels = {"model": model, "provider": provider}
            _histogram(latency, labels, LATENCY_BUCKETS, list(s.latency), s.latency_sum, s.created)
            _histogram(ttft, labels, TTFT_BUCKETS, list(s.ttft), s.ttft_sum, s.created)
            for kind, n in zip(_TOKEN_KINDS, list(s.tokens), strict=True):
                tokens.add_metric([model, provider, kind], n, created=s.created)
        refusals = CounterMetricFamily("oneplan_quota_refusals", _REFUSALS_HELP, labels=["model", "window"])
        for where, (count, created) in list(self.refusals.items()):
            refusals.add_metric(where, count, created=created)
        yield from (requests, latency, ttft, tokens, refusals)


def _count(counts: dict[_K, list[float]], key: _K) -> None:
    found = counts.get(key)
    if found is None:
        found = counts[key] = [0, time.time()]
    found[0] += 1


def _histogram(metric: Metric, labels: dict[str, str], bounds: tuple[float, ...], counts: list[int],
               total: float, created: float) -> None:
    """A histogram's samples as prometheus-client's own ``Histogram`` writes them."""
    running = 0
    for bound, n in zip((*bounds, math.inf), counts, strict=True):
        running += n
        metric.add_sample(f"{metric.name}_bucket", {**labels, "le": _bound_text(bound)}, running)
    metric.add_sample(f"{metric.name}_count", labels, running)
    metric.add_sample(f"{metric.name}_sum", labels, total)
    metric.add_sample(f"{metric.name}_created", labels, created)


def _bound_text(bound: float) -> str:
    """A bucket's ``le`` as prometheus-client writes it (``0.05``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


class SharedRequests:
    """The request metrics in prometheus-client's objects, for its multiprocess mode (several
    workers' counts aggregated at scrape time, whichever worker answers)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter("oneplan_requests", _REQUESTS_HELP, ["model", "provider", "status"], registry=registry)
        self.latency = Histogram(
            "oneplan_request_duration_seconds", _LATENCY_HELP, ["model", "provider"], buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "oneplan_time_to_first_token_seconds", _TTFT_HELP, ["model", "provider"], buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter("oneplan_tokens", _TOKENS_HELP, ["model", "provider", "kind"], registry=registry)
        self.refusals = Counter("oneplan_quota_refusals", _REFUSALS_HELP, ["model", "window"], registry=registry)
        self._bound: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def observe(self, row: LedgerRow) -> None:
        if row["status"] == "refused":
            self.refusals.labels(row["model"], _refused_window(row)).inc()
            self.requests.labels(row["model"], "", "refused").inc()
            return
        key, latency, ttft, tokens = _reading(row)
        bound = self._bound.get(key)
        if bound is None:
            model, provider, status = key
            bound = self._bound[key] = (
                self.requests.labels(model, provider, status),
                self.latency.labels(model, provider),
                self.ttft.labels(model, provider),
                *(self.tokens.labels(model, provider, kind) for kind in _TOKEN_KINDS),
            )
        bound[0].inc()
        bound[1].observe(latency)
        if ttft is not None:
            bound[2].observe(ttft)
        if tokens is not None:
            for child, n in zip(bound[3:], tokens, strict=True):
                if n:
                    child.inc(n)


_REQUESTS_HELP = "Finished requests by model, provider and outcome."
_LATENCY_HELP = "Whole request, arrival to last byte."
_TTFT_HELP = "Arrival to the upstream's first answer byte."
_TOKENS_HELP = "Tokens as the providers reported them, by class (input includes cached and cache_write)."
_REFUSALS_HELP = "Requests refused by a plan's quota, by window."


class Metrics:
    def __init__(self, health: Health) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode the values live in files; the registry only holds the collector.
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests: LocalRequests | SharedRequests
        if self.multiprocess:
            from prometheus_client import multiprocess

            self.requests = SharedRequests(None)
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            self.registry.register(HealthCollector(health, {"pid": str(os.getpid())}))
        else:
            self.requests = LocalRequests()
            self.registry.register(self.requests)
            self.registry.register(HealthCollector(health))
        self.observe = self.requests.observe  # one finished request (its ledger row)

    def watch_ledger(self, ledger: Any) -> None:
        extra = {"pid": str(os.getpid())} if self.multiprocess else None
        self.registry.register(LedgerCollector(ledger, extra))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
