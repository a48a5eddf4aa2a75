"""Running the scenario matrix and the memory scenario against one target.

Why a warm-up before each measurement: the first requests pay for connection set-up, lazy
imports and JIT-like caches in the gateway; a short unrecorded run at the same concurrency
makes each measured window a steady state.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .gateways import Target
from .loadgen import run_wrk
from .results import MemoryResult, ScenarioResult
from .sampler import PeakRss, system_busy_s, tree_cpu_s, tree_hwm_mb, tree_rss_mb
from .upstream import drain


@dataclass(frozen=True)
class Scenario:
    mode: str  # "json" or "stream"
    size: str  # "small" or "agent"
    concurrency: int

    @property
    def label(self) -> str:
        return f"{self.mode}/{self.size}/c{self.concurrency}"


def matrix(modes: list[str], sizes: list[str], concurrencies: list[int]) -> list[Scenario]:
    return [Scenario(m, s, c) for m in modes for s in sizes for c in concurrencies]


def run_one(target: Target, scenario: Scenario, body: Path, upstream: tuple[int, int],
            duration_s: float, warmup_s: float) -> ScenarioResult:
    """Warm up, drain, then measure req/s, latency, errors, peak RSS and CPU of one scenario.

    A window in which fewer responses than connections completed (LiteLLM at c=256 takes
    longer than 10 s per request) says nothing; it is measured again over 3x the duration.
    """
    upstream_pid, upstream_port = upstream
    if warmup_s > 0:
        run_wrk(target.url, body, scenario.mode, scenario.concurrency, warmup_s, target.auth)
        drain(upstream_port)
    result = _measure(target, scenario, body, upstream_pid, duration_s)
    if result.requests < scenario.concurrency:
        drain(upstream_port)
        result = _measure(target, scenario, body, upstream_pid, max(30.0, 3 * duration_s))
    drain(upstream_port)
    return result


def _measure(target: Target, scenario: Scenario, body: Path, upstream_pid: int,
             duration_s: float) -> ScenarioResult:
    up_cpu0 = tree_cpu_s([upstream_pid])
    gw_cpu0 = tree_cpu_s(target.pids)
    wrk_cpu0, busy0 = _children_cpu_s(), system_busy_s()
    t0 = time.monotonic()
    if target.pids:
        with PeakRss(target.pids) as peak:
            load = run_wrk(target.url, body, scenario.mode, scenario.concurrency, duration_s,
                           target.auth)
        peak_mb: float | None = peak.peak_mb
    else:
        load = run_wrk(target.url, body, scenario.mode, scenario.concurrency, duration_s,
                       target.auth)
        peak_mb = None
    wall = time.monotonic() - t0
    busy = system_busy_s() - busy0
    up_cpu = tree_cpu_s([upstream_pid]) - up_cpu0
    gw_cpu = tree_cpu_s(target.pids) - gw_cpu0
    other = busy - up_cpu - gw_cpu - (_children_cpu_s() - wrk_cpu0)
    cpu_per_req = gw_cpu / load.requests * 1e6 if target.pids and load.requests else None
    return ScenarioResult(
        target=target.name, mode=scenario.mode, size=scenario.size,
        concurrency=scenario.concurrency, rps=round(load.rps, 1),
        p50_ms=round(load.p50_ms, 3), p99_ms=round(load.p99_ms, 3),
        requests=load.requests, errors=load.errors,
        peak_rss_mb=round(peak_mb, 1) if peak_mb is not None else None,
        cpu_us_per_req=round(cpu_per_req, 1) if cpu_per_req is not None else None,
        upstream_cpu_pct=round(100 * up_cpu / wall, 1) if wall > 0 else None,
        other_cpu_pct=round(max(0.0, 100 * other / wall), 1) if wall > 0 else None,
        first_bad=load.first_bad,
    )


def _children_cpu_s() -> float:
    """CPU seconds of this harness's finished children: the wrk runs (gateways still run)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_all(target: Target, scenarios: list[Scenario], bodies: dict[tuple[str, str], Path],
            upstream: tuple[int, int], duration_s: float, warmup_s: float,
            log: Callable[[str], None]) -> list[ScenarioResult]:
    results = []
    for sc in scenarios:
        r = run_one(target, sc, bodies[(sc.size, sc.mode)], upstream, duration_s, warmup_s)
        log(f"{target.name:>10} {sc.label:<20} {r.rps:>9.1f} req/s  p50 {r.p50_ms:8.2f} ms  "
            f"p99 {r.p99_ms:8.2f} ms  errors {r.errors}"
            + (f"  rss {r.peak_rss_mb} MB" if r.peak_rss_mb is not None else "")
            + (f"  first bad: {r.first_bad[:120]}" if r.errors else ""))
        results.append(r)
    return results


def run_memory(target: Target, body: Path, total_requests: int, chunk_s: float,
               max_s: float, log: Callable[[str], None]) -> MemoryResult:
    """Drive `total_requests` small requests at concurrency 32, recording RSS after each chunk.

    wrk stops on time, not on a count, so the load is sent in chunks of chunk_s seconds until
    the total is reached (or max_s passes); the trajectory shows whether memory keeps growing.
    """
    done = 0
    trajectory: list[tuple[int, float]] = [(0, round(tree_rss_mb(target.pids), 1))]
    start = time.monotonic()
    while done < total_requests and time.monotonic() - start < max_s:
        load = run_wrk(target.url, body, "json", 32, chunk_s, target.auth)
        done += load.requests
        trajectory.append((done, round(tree_rss_mb(target.pids), 1)))
        if load.requests == 0:
            break
    rss = trajectory[-1][1]
    log(f"{target.name:>10} memory: {done} requests -> RSS {rss} MB "
        f"(trajectory {', '.join(f'{n}:{m}' for n, m in trajectory)})")
    return MemoryResult(target.name, done, rss, round(tree_hwm_mb(target.pids), 1), trajectory)
