"""Instructions a request costs oneplan, counted by callgrind: an A/B that machine noise cannot move.

CPU time per request moves by ±10% from run to run on a shared 2-core machine, which hides the
few-per-cent steps that a flat profile leaves. Instructions retired do not depend on what else
the machine does. Each tree (``label=path``, a checkout whose ``oneplan`` package is imported
through ``PYTHONPATH``) serves under ``valgrind --tool=callgrind`` with instrumentation off
until the measured window: its start-up and a warm-up run at near native speed, then wrk sends
``--duration`` seconds of one scenario while callgrind counts, and the count is dumped.

An idle gateway runs work of its own (the key cache and the alert outbox poll the database every
second), which under valgrind's ~50x slow-down would be a tenth of a request's count and vary
with how many requests a window holds. So each tree's idle rate is measured first, for as long
as a scenario, and ``net`` is (count - idle rate x seconds) / requests: what the requests
themselves cost. Repeat runs of one tree agree within ~1-2%.

    python bench/instructions.py before=/tmp/base after=. [--scenarios json,stream] [--duration 15]

Needs valgrind (Debian) and wrk; the fake upstream is built as for ``run.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import gateways, loadgen, payloads, upstream
from harness.procs import Supervisor, free_port

SCENARIOS = {
    "json": ("openai", "small", "json"),
    "stream": ("openai", "small", "stream"),
    "anthropic": ("anthropic", "small", "stream"),
}
VENV = Path(__file__).resolve().parent.parent / ".venv" / "bin"


def _control(*args: str) -> str:
    return subprocess.run(["callgrind_control", *args], capture_output=True, text=True, check=True).stdout


def _dumped(directory: Path, before: set[Path]) -> int:
    """The instruction total of the dump written since ``before`` was listed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = [p for p in directory.glob("callgrind.*.*") if p not in before and p.stat().st_size]
        for path in new:
            found = re.search(r"^totals:\s+(\d+)", path.read_text(errors="replace"), re.M)
            if found:
                return int(found.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump in {directory}")


def measure(label: str, tree: Path, scenarios: list[str], duration: float, connections: int,
            work: Path) -> list[tuple[str, int, float, int]]:
    """(scenario, instructions, seconds, requests) for the idle window and each scenario."""
    run_dir = work / label
    run_dir.mkdir()
    wrapper = run_dir / "oneplan-callgrind"
    wrapper.write_text(
        "#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
        f"--callgrind-out-file={run_dir}/callgrind.%p {VENV}/python {VENV}/oneplan \"$@\"\n"
    )
    wrapper.chmod(0o755)
    bodies = payloads.write_bodies(run_dir / "bodies")
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree)
    real_create = gateways._create_user
    real_wait = gateways.wait_http
    # Users are made by the plain CLI; the server may take minutes to start under valgrind.
    gateways._create_user = lambda _binary, *rest: real_create(VENV / "oneplan", *rest)  # type: ignore[assignment]
    gateways.wait_http = lambda url, managed, timeout_s, ok_statuses=(200,): real_wait(url, managed, 900, ok_statuses)  # type: ignore[assignment]
    out: list[tuple[str, int, float, int]] = []
    try:
        with Supervisor(run_dir / "logs") as sup:
            port = free_port()
            upstream.start(sup, port)
            run = gateways.start_oneplan(sup, wrapper, port, run_dir, 1)
            pid = str(run.target.pid)
            for name in ["idle", *scenarios]:
                url = body = protocol = mode = None
                if name != "idle":
                    protocol, size, mode = SCENARIOS[name]
                    url, body = run.target.url_for(protocol), bodies[(protocol, size, mode)]
                    assert url is not None
                    loadgen.run_wrk(url, body, mode, connections, 5, run.target.auth, protocol=protocol)
                    upstream.drain(port)
                before = set(run_dir.glob("callgrind.*"))
                _control("-z", pid)
                _control("-i", "on", pid)
                began = time.monotonic()
                requests = 0
                if url is None:
                    time.sleep(duration)
                else:
                    assert body is not None and mode is not None and protocol is not None
                    result = loadgen.run_wrk(url, body, mode, connections, duration, run.target.auth, protocol=protocol)
                    if result.errors:
                        raise RuntimeError(f"{label} {name}: {result.errors} bad answers ({result.first_bad})")
                    requests = result.requests
                    upstream.drain(port)
                _control("-i", "off", pid)
                seconds = time.monotonic() - began
                _control("-d", name, pid)
                out.append((name, _dumped(run_dir, before), seconds, requests))
            sup.stop(run.target.process)
    finally:
        gateways._create_user = real_create  # type: ignore[assignment]
        gateways.wait_http = real_wait  # type: ignore[assignment]
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="label=path of a checkout (its oneplan/ is imported)")
    ap.add_argument("--scenarios", default="json,stream", help=f"comma-separated: {', '.join(SCENARIOS)}")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds counted per scenario")
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="oneplan-instructions-"))
    print("| tree | scenario | requests | instructions / request | net of idle |")
    print("|---|---|--:|--:|--:|")
    for spec in args.trees:
        label, _, path = spec.partition("=")
        if not path:
            ap.error(f"{spec!r}: expected label=path")
        rows = measure(label, Path(path).resolve(), scenarios, args.duration, args.connections, work)
        _, idle_count, idle_seconds, _ = rows[0]
        rate = idle_count / idle_seconds
        for name, count, seconds, requests in rows[1:]:
            gross = count / requests
            net = (count - rate * seconds) / requests
            print(f"| {label} | {name} | {requests} | {gross:,.0f} | {net:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
