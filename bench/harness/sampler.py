"""Resident memory and CPU time of a process tree, read from /proc.

Why a tree: a gateway with `--workers 2` is a supervisor plus forked workers, and LiteLLM may
spawn helpers; what an operator pays for is the sum. Summing VmRSS double-counts pages shared
after fork, so the figure is an upper bound - the honest direction for a memory target.
Why CPU time: throughput alone hides whether the gateway or the upstream spent the CPU; CPU
microseconds per request is the number a profiler run should push down, and the upstream's CPU
share proves it was never the bottleneck.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_pids(roots: Sequence[int]) -> list[int]:
    """The roots and all their descendants (via /proc/<pid>/task/<tid>/children)."""
    pids: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        pids.append(pid)
        task_dir = Path(f"/proc/{pid}/task")
        try:
            tids = [t.name for t in task_dir.iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                children = (task_dir / tid / "children").read_text().split()
            except OSError:
                continue
            stack.extend(int(c) for c in children)
    return pids


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_mb(roots: Sequence[int]) -> float:
    """Current resident memory of the tree (sum of VmRSS), in MB."""
    return sum(_status_kb(p, "VmRSS") for p in tree_pids(roots)) / 1024


def tree_hwm_mb(roots: Sequence[int]) -> float:
    """Sum of each live process's own peak resident memory (VmHWM), in MB."""
    return sum(_status_kb(p, "VmHWM") for p in tree_pids(roots)) / 1024


def tree_cpu_s(roots: Sequence[int]) -> float:
    """User+system CPU seconds consumed so far by the live processes of the tree."""
    total = 0
    for pid in tree_pids(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            continue
    return total / _CLK_TCK


@dataclass
class PeakRss:
    """Samples a tree's resident memory every interval_s in a thread; keeps the peak."""

    roots: Sequence[int]
    interval_s: float = 0.1
    peak_mb: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self.peak_mb = tree_rss_mb(self.roots)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, tree_rss_mb(self.roots))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.roots))


def system_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait).

    Why: this machine is shared (other engineers run test suites on it); busy time that belongs
    to neither the gateway, the upstream nor wrk is reported per scenario as "other CPU", so a
    disturbed measurement is visible instead of silently wrong.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _CLK_TCK
