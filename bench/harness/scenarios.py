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
from .loadgen import LoadResult, run_wrk
from .payloads import BUILDERS, CC_SIZES
from .results import MemoryResult, ScenarioResult
from .sampler import PeakRss, system_busy_s, tree_cpu_s, tree_hwm_mb, tree_rss_mb
from .upstream import drain


@dataclass(frozen=True)
class Scenario:
    mode: str  # "json" or "stream"
    size: str  # "small", "agent" or one of payloads.CC_SIZES
    concurrency: int
    protocol: str = "openai"  # "openai" (/v1/chat/completions) or "anthropic" (/v1/messages)

    @property
    def label(self) -> str:
        return f"{self.protocol}/{self.mode}/{self.size}/c{self.concurrency}"


def matrix(modes: list[str], sizes: list[str], concurrencies: list[int],
           protocols: tuple[str, ...] | list[str] = ("openai",),
           body_concurrency: int = 32) -> list[Scenario]:
    """Every (protocol, mode, size, concurrency) that has a body.

    Why the Claude-Code-shaped sizes run at one concurrency only: they exist to show how the
    cost per request grows with the body, which CPU µs/request at a saturating concurrency
    shows; repeating them at every concurrency would triple the run for no new figure.
    """
    out = []
    for p in protocols:
        for m in modes:
            for s in sizes:
                if (p, s) not in BUILDERS:
                    continue
                for c in ([body_concurrency] if s in CC_SIZES else concurrencies):
                    out.append(Scenario(m, s, c, p))
    return out


def run_one(target: Target, scenario: Scenario, body: Path, upstream: tuple[int, int],
            duration_s: float, warmup_s: float) -> ScenarioResult:
    """Warm up, drain, then measure req/s, latency, errors, peak RSS and CPU of one scenario.

    A window in which fewer responses than connections completed (LiteLLM at c=256 takes
    longer than 10 s per request) says nothing; it is measured again over 3x the duration.
    """
    upstream_pid, upstream_port = upstream
    if warmup_s > 0:
        _wrk(target, scenario, body, warmup_s)
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
            load = _wrk(target, scenario, body, duration_s)
        peak_mb: float | None = peak.peak_mb
    else:
        load = _wrk(target, scenario, body, duration_s)
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
        first_bad=load.first_bad, protocol=scenario.protocol,
    )


def _wrk(target: Target, scenario: Scenario, body: Path, duration_s: float) -> LoadResult:
    url = target.url_for(scenario.protocol)
    assert url is not None, (target.name, scenario)
    return run_wrk(url, body, scenario.mode, scenario.concurrency, duration_s, target.auth,
                   protocol=scenario.protocol, headers=target.headers)


def _children_cpu_s() -> float:
    """CPU seconds of this harness's finished children: the wrk runs (gateways still run)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_all(target: Target, scenarios: list[Scenario],
            bodies: dict[tuple[str, str, str], Path], upstream: tuple[int, int],
            duration_s: float, warmup_s: float, log: Callable[[str], None]
            ) -> list[ScenarioResult]:
    """Run the scenarios whose protocol the target speaks; skip the others."""
    results = []
    for sc in scenarios:
        if sc.protocol not in target.protocols:
            continue
        r = run_one(target, sc, bodies[(sc.protocol, sc.size, sc.mode)], upstream, duration_s,
                    warmup_s)
        log(f"{target.name:>10} {sc.label:<30} {r.rps:>9.1f} req/s  p50 {r.p50_ms:8.2f} ms  "
            f"p99 {r.p99_ms:8.2f} ms  errors {r.errors}"
            + (f"  cpu {r.cpu_us_per_req:,.0f} us/req" if r.cpu_us_per_req is not None else "")
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
