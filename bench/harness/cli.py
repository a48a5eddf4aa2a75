"""`python bench/run.py`: the whole benchmark in one command.

Order of a run, and why:
1. install what is missing (LiteLLM's venv, matplotlib's venv, the Node peers' `npm ci`) before
   anything is measured, so no installer competes for the CPU with a measurement;
2. start the fake upstream and measure it alone - every gateway figure is read against it;
3. the bare Python proxy: the floor of what a Python gateway costs per request;
4. oneplan (1 worker): the scenario matrix, the 100k-request memory scenario, the quota check;
5. oneplan with `--workers 2`: the c=32/256 small scenarios and the quota check again;
6. Portkey's gateway, then claude-code-router, then LiteLLM's proxy last (slowest: ~10 s to
   start, ~60 req/s);
7. write bench/results/<stamp>.md/.json/.png and print the table and the targets.
Each target runs the scenarios of the protocols it speaks (OpenAI chat, Anthropic Messages);
a protocol whose smoke request fails is dropped for that target with a note.
Only one gateway runs at a time, so they never share the two cores with each other.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import gateways, peers, quota, scenarios, upstream, venvs
from .loadgen import wrk_path
from .payloads import PROTOCOLS, body_kb, write_bodies
from .procs import HarnessError, Supervisor, free_port, port_is_free
from .report import render
from .results import QuotaOutcome, RunResults, borrow_baselines
from .targets import evaluate

BENCH_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BENCH_DIR / "results"
ALL_TARGETS = ("direct", "bare", "oneplan", "portkey", "ccr", "litellm")
PEER_TARGETS = tuple(t for t in ALL_TARGETS if t != "oneplan")
DEFAULT_SIZES = "small,agent,cc1k,cc15k,cc60k"


def _strs(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(ALL_TARGETS),
                   help=f"comma list of {','.join(ALL_TARGETS)} (skipped targets' figures "
                        "are taken from the newest earlier result that has them)")
    p.add_argument("--quick", action="store_true",
                   help="3 s per scenario, 1 s warm-up, c=1,32 only, 20k-request memory run")
    p.add_argument("--duration", type=float, default=None, help="seconds per scenario (10)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds (2)")
    p.add_argument("--concurrency", default=None, help="comma list (1,32,256)")
    p.add_argument("--modes", default="json,stream", help="comma list of json,stream")
    p.add_argument("--sizes", default=DEFAULT_SIZES,
                   help=f"comma list of {DEFAULT_SIZES} (the cc* Claude-Code-shaped bodies of "
                        "~1/15/60 KB run at --body-concurrency only)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   help="comma list of openai (/v1/chat/completions), anthropic (/v1/messages)")
    p.add_argument("--body-concurrency", type=int, default=32,
                   help="concurrency of the cc* body-size scenarios (32)")
    p.add_argument("--memory-requests", type=int, default=None,
                   help="requests for oneplan's memory scenario (100000; 0 skips it)")
    p.add_argument("--no-workers2", action="store_true", help="skip the --workers 2 run")
    p.add_argument("--no-quota", action="store_true", help="skip the quota exactness check")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG (and matplotlib)")
    p.add_argument("--oneplan-bin", default=None,
                   help="oneplan executable (default: /work/main/.venv/bin/oneplan)")
    p.add_argument("--upstream-port", type=int, default=18901)
    p.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    p.add_argument("--name", default=None,
                   help="file name of the results in bench/results/ (default: the time stamp)")
    p.add_argument("--note", action="append", default=[],
                   help="a sentence for the report's notes (e.g. how busy the machine was)")
    p.add_argument("--render", default=None, metavar="RESULTS.json",
                   help="measure nothing: rewrite the .md (and .png) of a recorded run")
    args = p.parse_args(argv)
    args.targets = [t for t in _strs(args.only) if t in ALL_TARGETS]
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    default_conc = "1,32" if args.quick else "1,32,256"
    args.concurrency = [int(c) for c in _strs(args.concurrency or default_conc)]
    if args.memory_requests is None:
        args.memory_requests = 20_000 if args.quick else 100_000
    args.modes, args.sizes = _strs(args.modes), _strs(args.sizes)
    args.protocols = [p for p in _strs(args.protocols) if p in PROTOCOLS]
    return args


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, Python " \
           f"{platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return _rerender(Path(args.render), args)
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    run = RunResults(stamp, machine(), {
        "duration_s": args.duration, "warmup_s": args.warmup,
        "concurrency": args.concurrency, "modes": args.modes, "sizes": args.sizes,
        "targets": args.targets, "litellm_version": venvs.LITELLM_VERSION,
        "protocols": args.protocols, "body_concurrency": args.body_concurrency,
        "peer_versions": peers.versions(),
    }, notes=list(args.note))
    wrk_path()  # fail now, not after the installs, when wrk is missing
    litellm_bin = venvs.ensure("litellm", venvs.LITELLM_REQUIREMENTS) \
        if "litellm" in args.targets else None
    if {"portkey", "ccr"} & set(args.targets):
        try:
            peers.ensure_node_peers()
        except HarnessError as exc:
            run.notes.append(f"Portkey and claude-code-router skipped: {exc}")
            log(run.notes[-1])
            args.targets = [t for t in args.targets if t not in ("portkey", "ccr")]
    tools_bin = None if args.no_chart else venvs.ensure("tools", venvs.TOOLS_REQUIREMENTS)
    oneplan_bin = gateways.oneplan_binary(args.oneplan_bin)
    if "oneplan" in args.targets and oneplan_bin is None:
        run.notes.append("oneplan is not installed, so it was skipped: run "
                         "`/work/main/.venv/bin/pip install -e /work/main`.")
        log(run.notes[-1])
    workdir = Path(tempfile.mkdtemp(prefix="oneplan-bench-"))
    try:
        with Supervisor(workdir / "logs") as sup:
            _measure(args, run, sup, workdir, oneplan_bin, litellm_bin)
    except KeyboardInterrupt:
        log("interrupted: all processes stopped; no result written")
        return 130
    finally:
        if args.keep:
            log(f"run directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return _write(run, tools_bin, args.name or stamp)


def _measure(args: argparse.Namespace, run: RunResults, sup: Supervisor, workdir: Path,
             oneplan_bin: Path | None, litellm_bin: Path | None) -> None:
    port = args.upstream_port if port_is_free(args.upstream_port) else free_port()
    up = upstream.start(sup, port)
    log(f"fake upstream on 127.0.0.1:{port} (pid {up.pid})")
    bodies = write_bodies(workdir / "bodies")
    run.settings["body_kb"] = body_kb(bodies)
    grid = scenarios.matrix(args.modes, args.sizes, args.concurrency, args.protocols,
                            args.body_concurrency)

    def measure(target: gateways.Target, grid_: list[scenarios.Scenario]) -> None:
        wanted = [p for p in target.protocols if any(s.protocol == p for s in grid_)]
        for protocol in wanted:
            try:
                gateways.smoke(target, bodies[(protocol, "small", "json")], protocol)
            except HarnessError as exc:
                if len(target.protocols) == 1:
                    raise
                run.notes.append(f"{target.name}: {protocol} scenarios skipped: {exc}")
                log(run.notes[-1])
                target = replace(target, **({"messages_url": None} if protocol == "anthropic"
                                            else {"url": ""}))
        run.scenarios += scenarios.run_all(target, grid_, bodies, (up.pid, port), args.duration,
                                           args.warmup, log)

    def peer(name: str, start: Callable[[], gateways.Target]) -> None:
        try:
            target = start()
            log(f"{name} up (pid {target.pid})")
            measure(target, grid)
            assert target.process is not None
            sup.stop(target.process)
        except HarnessError as exc:
            run.notes.append(f"{name} failed: {exc}")
            log(run.notes[-1])

    if "direct" in args.targets:
        measure(gateways.direct(port), grid)
    if "bare" in args.targets:
        peer("bare Python proxy",
             lambda: peers.start_bare(sup, peers.python_beside(oneplan_bin), port))
    if "oneplan" in args.targets and oneplan_bin is not None:
        _oneplan(args, run, sup, workdir, oneplan_bin, port, bodies, grid, measure)
    if "portkey" in args.targets:
        peer(f"Portkey gateway {run.settings['peer_versions']['@portkey-ai/gateway']}",
             lambda: peers.start_portkey(sup, port))
    if "ccr" in args.targets:
        peer(f"claude-code-router "
             f"{run.settings['peer_versions']['@musistudio/claude-code-router']}",
             lambda: peers.start_ccr(sup, port, workdir))
    if "litellm" in args.targets and litellm_bin is not None:
        peer(f"LiteLLM {venvs.LITELLM_VERSION} proxy",
             lambda: gateways.start_litellm(sup, litellm_bin, port, workdir))


def _oneplan(args: argparse.Namespace, run: RunResults, sup: Supervisor, workdir: Path,
             binary: Path, port: int, bodies: dict[tuple[str, str, str], Path],
             grid: list[scenarios.Scenario],
             measure: Callable[[gateways.Target, list[scenarios.Scenario]], None]) -> None:
    worker_counts = [1] if args.no_workers2 else [1, 2]
    for workers in worker_counts:
        try:
            op = gateways.start_oneplan(sup, binary, port, workdir, workers)
            log(f"oneplan --workers {workers} up (pid {op.target.pid})")
            if workers == 1:
                measure(op.target, grid)
                if args.memory_requests > 0:
                    run.memory.append(scenarios.run_memory(
                        op.target, bodies[("openai", "small", "json")], args.memory_requests,
                        chunk_s=10.0, max_s=300.0, log=log))
            else:
                measure(op.target, [s for s in grid if s.size == "small" and s.concurrency >= 32
                                    and s.protocol == "openai"])
            if not args.no_quota:
                run.quota.append(_quota(op, port,
                                        bodies[("openai", "small", "json")].read_bytes()))
                log(run.quota[-1].describe)
            for proc in (op.target.process, *op.target.helpers):
                if proc is not None:
                    sup.stop(proc)
        except HarnessError as exc:
            run.notes.append(f"oneplan --workers {workers} failed: {exc}")
            log(run.notes[-1])


def _quota(op: gateways.OneplanRun, port: int, body: bytes) -> QuotaOutcome:
    allowed = quota.quota_limit()
    before = upstream.settled_chat_count(port)
    statuses = quota.fire(op.target.url, op.quota_auth, body, 2 * allowed)
    forwarded = upstream.settled_chat_count(port) - before
    r = quota.QuotaResult(op.workers, allowed, 2 * allowed, dict(statuses), forwarded)
    return QuotaOutcome(r.workers, r.allowed, r.sent, {str(k): v for k, v in r.statuses.items()},
                        r.forwarded, r.exact, r.describe())


def _rerender(path: Path, args: argparse.Namespace) -> int:
    """Rewrite a recorded run's report (after a change to report.py, or with --note added)."""
    run = RunResults.load(path)
    run.notes += [n for n in args.note if n not in run.notes]
    tools_bin = None if args.no_chart else venvs.ensure("tools", venvs.TOOLS_REQUIREMENTS)
    return _write(run, tools_bin, path.stem, borrow=False)


def _write(run: RunResults, tools_bin: Path | None, name: str, borrow: bool = True) -> int:
    RESULTS_DIR.mkdir(exist_ok=True)
    if borrow:
        borrow_baselines(run, RESULTS_DIR, PEER_TARGETS)
    checks = evaluate(run)
    base = RESULTS_DIR / name
    run.save(base.with_suffix(".json"))
    text = render(run, checks)
    if tools_bin is not None:
        proc = subprocess.run([str(tools_bin / "python"), str(Path(__file__).with_name("chart.py")),
                               str(base.with_suffix(".json")), str(base.with_suffix(".png"))],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            text += f"\n![chart]({base.with_suffix('.png').name})\n"
        else:
            log(f"chart failed: {proc.stderr[-500:]}")
    base.with_suffix(".md").write_text(text)
    print("\n" + text)
    log(f"wrote {base}.md, .json" + (", .png" if tools_bin else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
