"""Rendering a run as Markdown: summary table with ratios, details, memory, targets.

Why Markdown: the file lands in bench/results/ next to the code, reads well in a diff and in a
pull request, and the same text is printed to the terminal.
"""

from __future__ import annotations

from .results import RunResults, ScenarioResult
from .targets import Check


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _ratio(a: ScenarioResult | None, b: ScenarioResult | None) -> str:
    if a is None or b is None or b.rps <= 0:
        return "-"
    ratio = a.rps / b.rps
    return f"{ratio:.3f}x" if ratio < 1 else (f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x")


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    return f"{_num(a, fmt)} / {_num(b, fmt)}"


def _mark(r: ScenarioResult | None) -> str:
    return "†" if r is not None and r.recorded else ""


def summary_table(run: RunResults) -> list[str]:
    keys = sorted({s.key for s in run.scenarios if s.target in ("direct", "oneplan", "litellm")},
                  key=lambda k: (k[0], k[1] != "small", k[2]))
    lines = [
        "| scenario | direct req/s | oneplan req/s | LiteLLM req/s | oneplan/LiteLLM "
        "| oneplan/direct | p50 ms op / LL | p99 ms op / LL | added p50 ms op / LL "
        "| errors op / LL | peak RSS MB op / LL |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key in keys:
        d, o, lt = (run.find(t, key) for t in ("direct", "oneplan", "litellm"))
        added_o = o.p50_ms - d.p50_ms if o and d else None
        added_l = lt.p50_ms - d.p50_ms if lt and d else None
        lines.append(
            f"| {key[0]} {key[1]} c={key[2]} "
            f"| {_num(d.rps if d else None)}{_mark(d)} | {_num(o.rps if o else None)} "
            f"| {_num(lt.rps if lt else None, '{:,.1f}')}{_mark(lt)} | {_ratio(o, lt)} "
            f"| {_ratio(o, d)} "
            f"| {_pair(o.p50_ms if o else None, lt.p50_ms if lt else None, '{:.2f}')} "
            f"| {_pair(o.p99_ms if o else None, lt.p99_ms if lt else None, '{:.2f}')} "
            f"| {_pair(added_o, added_l, '{:.2f}')} "
            f"| {_pair(o.errors if o else None, lt.errors if lt else None, '{:d}')} "
            f"| {_pair(o.peak_rss_mb if o else None, lt.peak_rss_mb if lt else None, '{:.0f}')} |"
        )
    return lines


def detail_table(run: RunResults) -> list[str]:
    lines = [
        "| target | scenario | req/s | p50 ms | p99 ms | requests | errors | peak RSS MB "
        "| gateway CPU µs/req | upstream CPU % of a core | other CPU % of a core |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in run.scenarios:
        lines.append(
            f"| {s.target}{' (recorded ' + s.recorded + ')' if s.recorded else ''} "
            f"| {s.mode} {s.size} c={s.concurrency} | {s.rps:,.1f} | {s.p50_ms:.2f} "
            f"| {s.p99_ms:.2f} | {s.requests:,} | {s.errors} | {_num(s.peak_rss_mb)} "
            f"| {_num(s.cpu_us_per_req)} | {_num(s.upstream_cpu_pct, '{:.1f}')} "
            f"| {_num(s.other_cpu_pct, '{:.0f}')} |"
        )
    return lines


def headroom(run: RunResults) -> list[str]:
    """Evidence that the upstream never limited a gateway."""
    direct = [s for s in run.scenarios if s.target == "direct" and not s.recorded]
    gw = [s for s in run.scenarios if s.target != "direct" and not s.recorded
          and s.upstream_cpu_pct is not None]
    out = []
    if direct:
        best = max(direct, key=lambda s: s.rps)
        out.append(f"- Upstream alone (through the same wrk): up to {best.rps:,.0f} req/s "
                   f"({best.mode} {best.size} c={best.concurrency}).")
    if gw:
        worst = max(gw, key=lambda s: s.upstream_cpu_pct or 0)
        out.append(f"- While a gateway was measured, the upstream used at most "
                   f"{worst.upstream_cpu_pct:.1f}% of one core ({worst.target}, {worst.mode} "
                   f"{worst.size} c={worst.concurrency}).")
    noisy = [s for s in run.scenarios if not s.recorded and (s.other_cpu_pct or 0) > 20]
    if noisy:
        worst_o = max(noisy, key=lambda s: s.other_cpu_pct or 0)
        out.append(f"- Warning: other work on this machine used more than 20% of a core during "
                   f"{len(noisy)} scenario(s), up to {worst_o.other_cpu_pct:.0f}% "
                   f"({worst_o.target} {worst_o.mode} {worst_o.size} c={worst_o.concurrency}); "
                   f"those figures are pessimistic.")
    return out


def render(run: RunResults, checks: list[Check]) -> str:
    s = run.settings
    parts = [
        f"# oneplan benchmark - {run.stamp}",
        "",
        f"Machine: {run.machine}. Load: wrk, 1 thread, closed loop, {s['duration_s']} s per "
        f"scenario after {s['warmup_s']} s warm-up. Gateways: 1 worker each, no database, key "
        f"auth on. LiteLLM {s['litellm_version']}. Stream latency = time to last byte.",
        "",
        "## Summary",
        "",
        *summary_table(run),
        "",
        "added p50 = gateway p50 - direct p50 in the same scenario. "
        "† = figure recorded by an earlier run (this run skipped that target).",
        "",
        *headroom(run),
        "",
        "## Targets",
        "",
        "| target | measured | threshold | result |",
        "|---|---|---|---|",
        *(f"| {c.name} | {c.measured} | {c.threshold} | **{c.status}** |" for c in checks),
        "",
    ]
    if run.memory:
        parts += ["## Memory scenario", ""]
        for m in run.memory:
            traj = ", ".join(f"{n:,}: {mb:.0f}" for n, mb in m.trajectory)
            parts.append(f"- {m.target}: RSS {m.rss_mb:.0f} MB after {m.requests:,} requests "
                         f"(peak per-process HWM sum {m.hwm_mb:.0f} MB). Requests: MB - {traj}")
        parts.append("")
    parts += ["## All measurements", "", *detail_table(run), ""]
    if run.notes:
        parts += ["## Notes", "", *(f"- {n}" for n in run.notes), ""]
    return "\n".join(parts)
