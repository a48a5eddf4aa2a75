"""Rendering a run as Markdown: summary table with ratios, details, memory, targets.

Why Markdown: the file lands in bench/results/ next to the code, reads well in a diff and in a
pull request, and the same text is printed to the terminal.
"""

from __future__ import annotations

from .results import RunResults, ScenarioResult
from .targets import Check, growth


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _mark(r: ScenarioResult | None) -> str:
    return "†" if r is not None and r.recorded else ""


# Summary columns, in order: the floor rows first, then oneplan, then the peer gateways.
COLUMNS = (("direct", "direct"), ("bare", "bare Python"), ("oneplan", "oneplan"),
           ("portkey", "Portkey"), ("ccr", "claude-code-router"), ("litellm", "LiteLLM"))
PROTOCOL_NAMES = {"openai": "OpenAI chat", "anthropic": "Anthropic Messages"}


def _sort_key(k: tuple[str, str, str, int]) -> tuple[int, str, int, int]:
    sizes = ("small", "agent", "cc1k", "cc15k", "cc60k")
    return (0 if k[0] == "openai" else 1, k[1], sizes.index(k[2]) if k[2] in sizes else 9, k[3])


def _keys(run: RunResults) -> list[tuple[str, str, str, int]]:
    names = {t for t, _ in COLUMNS}
    return sorted({s.key for s in run.scenarios if s.target in names}, key=_sort_key)


def _label(key: tuple[str, str, str, int]) -> str:
    return f"{PROTOCOL_NAMES.get(key[0], key[0])} {key[1]} {key[2]} c={key[3]}"


def _times(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")


def _matrix(run: RunResults, metric: str) -> list[str]:
    """One row per scenario, one column per target; peers' cells carry oneplan's advantage.

    req/s: "964 (3.8x)" = the peer's req/s and oneplan's req/s divided by it.
    CPU: "1,215 (4.4x)" = the peer's CPU µs/request and that divided by oneplan's.
    So in both tables a ratio above 1 means oneplan does better.
    """
    cols = [(t, n) for t, n in COLUMNS if any(s.target == t for s in run.scenarios)]
    lines = ["| scenario | " + " | ".join(n for _, n in cols) + " |",
             "|---|" + "--:|" * len(cols)]
    for key in _keys(run):
        one = run.find("oneplan", key)
        cells = []
        for t, _ in cols:
            r = run.find(t, key)
            v = None if r is None else (r.rps if metric == "rps" else r.cpu_us_per_req)
            if v is None:
                cells.append("-")
                continue
            cell = f"{v:,.0f}" if v >= 10 else f"{v:,.1f}"
            o = None if one is None else (one.rps if metric == "rps" else one.cpu_us_per_req)
            if t != "oneplan" and o and v:
                cell += f" ({_times(o / v if metric == 'rps' else v / o)})"
            cells.append(cell + _mark(r))
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


def latency_table(run: RunResults) -> list[str]:
    cols = [(t, n) for t, n in COLUMNS if any(s.target == t for s in run.scenarios)]
    lines = ["| scenario | " + " | ".join(f"{n} p50 / p99 ms" for _, n in cols) + " |",
             "|---|" + "--:|" * len(cols)]
    for key in _keys(run):
        cells = []
        for t, _ in cols:
            r = run.find(t, key)
            cells.append("-" if r is None else f"{r.p50_ms:.2f} / {r.p99_ms:.2f}{_mark(r)}")
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


def growth_table(run: RunResults) -> list[str]:
    """CPU µs/request per body size: how parse and serialise cost grows with the body."""
    kb: dict[str, float] = run.settings.get("body_kb", {})
    conc = run.settings.get("body_concurrency", 32)
    lines = []
    for protocol in ("openai", "anthropic"):
        for mode in ("json", "stream"):
            rows = []
            for t, name in COLUMNS:
                found = [run.find(t, (protocol, mode, s, conc)) for s in ("cc1k", "cc15k", "cc60k")]
                if all(f is None or f.cpu_us_per_req is None for f in found):
                    continue  # e.g. direct: the upstream's CPU is not a gateway's
                cells = [_num(f.cpu_us_per_req if f else None) + _mark(f) for f in found]
                g = growth(run, t, protocol, mode)
                slope = "-" if g is None else f"{g[0]:.1f} / {g[1]:.1f}"
                rps = _num(found[2].rps if found[2] else None)
                rows.append(f"| {name} | " + " | ".join(cells) + f" | {slope} | {rps} |")
            if not rows:
                continue
            sizes = " | ".join(f"µs/req at {kb.get(f'{protocol}/{s}', 0):.1f} KB"
                               for s in ("cc1k", "cc15k", "cc60k"))
            lines += [f"**{PROTOCOL_NAMES[protocol]}, {mode}, c={conc}**", "",
                      f"| target | {sizes} | µs per KB 1→15 / 15→60 | req/s at 60 KB |",
                      "|---|--:|--:|--:|--:|--:|", *rows, ""]
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
            f"| {_label(s.key)} | {s.rps:,.1f} | {s.p50_ms:.2f} "
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
    versions = ", ".join(f"{k} {v}" for k, v in s.get("peer_versions", {}).items())
    kb = ", ".join(f"{k} {v} KB" for k, v in s.get("body_kb", {}).items())
    parts = [
        f"# oneplan benchmark - {run.stamp}",
        "",
        f"Machine: {run.machine}. Load: wrk, 1 thread, closed loop, {s['duration_s']} s per "
        f"scenario after {s['warmup_s']} s warm-up. Gateways: 1 process each, no database. "
        f"LiteLLM {s['litellm_version']}" + (f"; {versions}" if versions else "") + ". "
        "Stream latency = time to last byte. CPU µs/req = the gateway process tree's own CPU "
        "time (utime + stime from /proc) over the requests wrk completed, so it holds even "
        "though wrk and the upstream share the cores." + (f" Bodies: {kb}." if kb else ""),
        "",
        *(["## Notes", "", *(f"- {n}" for n in run.notes), ""] if run.notes else []),
        "## Throughput (req/s; in brackets oneplan's req/s over the column's)",
        "",
        *_matrix(run, "rps"),
        "",
        "## CPU per request (µs; in brackets the column's over oneplan's)",
        "",
        *_matrix(run, "cpu"),
        "",
        "† = figure recorded by an earlier run (this run skipped that target). direct = the "
        "fake upstream itself (its CPU is not counted); bare = bench/peers/bare_proxy.py, "
        "forwarding bytes only, the floor.",
        "",
        *headroom(run),
        "",
        "## Cost against body size (Claude-Code-shaped requests)",
        "",
        *growth_table(run),
        "## Latency",
        "",
        *latency_table(run),
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
    return "\n".join(parts)
