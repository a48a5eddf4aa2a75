"""Draw a run's results as a PNG: throughput and p50 latency per scenario, per target.

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

COLORS = {"direct": "#999999", "oneplan": "#1f77b4", "oneplan-w2": "#17becf",
          "litellm": "#d62728"}


def main(src: str, out: str) -> None:
    with open(src) as f:
        run: dict[str, Any] = json.load(f)
    rows = run["scenarios"]
    keys = sorted({(r["mode"], r["size"], r["concurrency"]) for r in rows},
                  key=lambda k: (k[0], k[1] != "small", k[2]))
    targets = [t for t in COLORS if any(r["target"] == t for r in rows)]
    by = {(r["target"], r["mode"], r["size"], r["concurrency"]): r for r in rows}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(keys)), 8), sharex=True)
    width = 0.8 / max(1, len(targets))
    for metric, ax, label in ((
            "rps", axes[0], "requests/s (log)"), ("p50_ms", axes[1], "p50 latency ms (log)")):
        for i, t in enumerate(targets):
            xs, ys = [], []
            for j, k in enumerate(keys):
                r = by.get((t, *k))
                if r is not None and r[metric] > 0:
                    xs.append(j + (i - (len(targets) - 1) / 2) * width)
                    ys.append(r[metric])
            ax.bar(xs, ys, width=width, label=t, color=COLORS[t])
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(ncol=len(targets))
    axes[0].set_title(f"oneplan benchmark {run['stamp']} - {run['machine']}")
    axes[1].set_xticks(range(len(keys)))
    axes[1].set_xticklabels([f"{m}\n{s}\nc={c}" for m, s, c in keys], fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
