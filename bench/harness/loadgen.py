"""Driving a target with wrk and reading back what happened.

Why wrk: a C, epoll-based, closed-loop generator with HdrHistogram latencies; one thread pushes
~70k req/s here, so the generator is not what limits a Python gateway. It is driven through
bench/wrk/post.lua, which checks each body and prints one JSON line. Closed loop means each of
the N connections sends its next request when the previous answer is complete - the
"concurrency N" of the report. Latency for a stream is the time to its last byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import HarnessError

LUA_SCRIPT = Path(__file__).resolve().parent.parent / "wrk" / "post.lua"
# What a complete, successful answer contains, per (protocol, mode).
MARKERS = {("openai", "json"): '"choices"', ("openai", "stream"): "[DONE]",
           ("anthropic", "json"): '"stop_reason"', ("anthropic", "stream"): "message_stop"}


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    status_429: int
    first_bad: str

    @property
    def rps(self) -> float:
        """Successful responses per second; broken answers do not count as throughput."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise HarnessError("wrk is not installed: run `apt-get install -y wrk` (as root)")
    return path


def run_wrk(url: str, body: Path, mode: str, connections: int, duration_s: float,
            auth: str | None, threads: int = 1, protocol: str = "openai",
            headers: tuple[tuple[str, str], ...] = ()) -> LoadResult:
    """Run wrk against url for duration_s with `connections` connections."""
    argv = [
        wrk_path(), f"-t{min(threads, connections)}", f"-c{connections}",
        f"-d{max(1, round(duration_s))}s", "--timeout", "30s", "-s", str(LUA_SCRIPT), url,
        "--", str(body), MARKERS[(protocol, mode)], auth or "-", "0",
        "\n".join(f"{k}: {v}" for k, v in headers),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 90)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise HarnessError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    transport_errors = sum(raw[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    return LoadResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        ok=int(raw["ok"]),
        errors=int(raw["bad"]) + int(transport_errors),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        status_429=int(raw["s429"]),
        first_bad=str(raw["first_bad"]),
    )
