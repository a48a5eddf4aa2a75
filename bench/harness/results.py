"""The figures a run produces, as plain dataclasses that round-trip through JSON.

Why JSON next to the Markdown: the chart is drawn by a separate interpreter (the tools venv),
and a later `--only oneplan` run compares against the LiteLLM and direct figures recorded by
an earlier full run instead of paying for them again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ScenarioResult:
    """One (target, mode, size, concurrency) measurement."""

    target: str
    mode: str
    size: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    peak_rss_mb: float | None = None
    cpu_us_per_req: float | None = None
    upstream_cpu_pct: float | None = None
    other_cpu_pct: float | None = None  # busy CPU not ours: other work on a shared machine
    first_bad: str = ""
    recorded: str = ""  # non-empty when copied from an earlier run: that run's stamp
    protocol: str = "openai"  # "openai" (chat completions) or "anthropic" (messages)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.protocol, self.mode, self.size, self.concurrency)


@dataclass
class MemoryResult:
    """RSS of a gateway while it serves many requests (a leak shows as a rising trajectory)."""

    target: str
    requests: int
    rss_mb: float
    hwm_mb: float
    trajectory: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class QuotaOutcome:
    workers: int
    allowed: int
    sent: int
    statuses: dict[str, int]
    forwarded: int
    exact: bool
    describe: str


@dataclass
class RunResults:
    stamp: str
    machine: str
    settings: dict[str, Any]
    scenarios: list[ScenarioResult] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    quota: list[QuotaOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def find(self, target: str, key: tuple[str, str, str, int]) -> ScenarioResult | None:
        return next((s for s in self.scenarios if s.target == target and s.key == key), None)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @staticmethod
    def load(path: Path) -> RunResults:
        raw = json.loads(path.read_text())
        run = RunResults(raw["stamp"], raw["machine"], raw["settings"], notes=raw["notes"])
        run.scenarios = [ScenarioResult(**s) for s in raw["scenarios"]]
        run.memory = [MemoryResult(**{**m, "trajectory": [tuple(t) for t in m["trajectory"]]})
                      for m in raw["memory"]]
        run.quota = [QuotaOutcome(**q) for q in raw["quota"]]
        return run


def borrow_baselines(run: RunResults, results_dir: Path, targets: tuple[str, ...]) -> None:
    """Fill in scenarios of `targets` this run skipped from the newest earlier run that has them.

    Why: the lead iterates with `--only oneplan`; LiteLLM's figures barely move between runs
    on the same machine, so they are reused (and marked as recorded) rather than re-measured.
    """
    wanted = {s.key for s in run.scenarios}
    earlier: list[RunResults] = []
    for path in results_dir.glob("*.json"):
        try:
            earlier.append(RunResults.load(path))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    earlier.sort(key=lambda r: r.stamp, reverse=True)  # newest run first, whatever its file name
    for target in targets:
        for key in sorted(wanted):
            if run.find(target, key) is not None:
                continue
            for old in earlier:
                found = old.find(target, key)
                if found is not None and not found.recorded:
                    found.recorded = old.stamp
                    run.scenarios.append(found)
                    break
