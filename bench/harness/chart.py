"""Draw a run's results as a PNG: req/s, CPU µs/request and p50 latency per scenario and target.

Run by the tools venv's interpreter (it has matplotlib), as a script:
    python bench/harness/chart.py RESULTS.json OUT.png
Why a separate script: matplotlib lives only in bench/.venvs/tools, not in oneplan's
environment nor in the interpreter running the harness. It reads the JSON written by
results.RunResults.save and imports nothing else from the harness.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib  # type: ignore[import-not-found]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found]

COLORS = {"direct": "#999999", "bare": "#bcbd22", "oneplan": "#1f77b4",
          "oneplan-w2": "#17becf", "portkey": "#9467bd", "ccr": "#ff7f0e", "litellm": "#d62728"}
SIZES = ("small", "agent", "cc1k", "cc15k", "cc60k")
PANELS = (("rps", "requests/s (log)"), ("cpu_us_per_req", "gateway CPU µs/request (log)"),
          ("p50_ms", "p50 latency ms (log)"))


def main(src: str, out: str) -> None:
    with open(src) as f:
        run: dict[str, Any] = json.load(f)
    rows = run["scenarios"]
    for r in rows:
        r.setdefault("protocol", "openai")
    keys = sorted({(r["protocol"], r["mode"], r["size"], r["concurrency"]) for r in rows},
                  key=lambda k: (k[0] != "openai", k[1], SIZES.index(k[2])
                                 if k[2] in SIZES else 9, k[3]))
    targets = [t for t in COLORS if any(r["target"] == t for r in rows)]
    by = {(r["target"], r["protocol"], r["mode"], r["size"], r["concurrency"]): r for r in rows}
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(max(10, 0.75 * len(keys)), 11),
                             sharex=True)
    width = 0.8 / max(1, len(targets))
    for (metric, label), ax in zip(PANELS, axes, strict=True):
        for i, t in enumerate(targets):
            xs, ys = [], []
            for j, k in enumerate(keys):
                r = by.get((t, *k))
                if r is not None and (r.get(metric) or 0) > 0:
                    xs.append(j + (i - (len(targets) - 1) / 2) * width)
                    ys.append(r[metric])
            ax.bar(xs, ys, width=width, label=t, color=COLORS[t])
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(ncol=len(targets))
    axes[0].set_title(f"oneplan benchmark {run['stamp']} - {run['machine']}")
    axes[-1].set_xticks(range(len(keys)))
    axes[-1].set_xticklabels([f"{'chat' if p == 'openai' else 'msgs'} {m}\n{s}\nc={c}"
                              for p, m, s, c in keys], fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
