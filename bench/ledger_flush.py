"""CPU a ledger row costs the writer thread: the rows of a flush, in one transaction.

The gateway's ledger thread runs beside the event loop on the same cores, so what it spends
per row is part of every request's CPU. This times ``LedgerWriter.write`` (roll-up, insert,
commit) on a SQLite file with the real schema, after filling it so that its B-trees have the
depth of a working ledger. Thread CPU, not wall time: the file's fsyncs are not counted.

    python bench/ledger_flush.py [--fill 200000] [--batch 400] [--flushes 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from oneplan.metering.ledger import LEDGER_DEFAULTS, LedgerWriter, fit
from oneplan.store.db import Database


def rows(start: int, count: int, now: float) -> list[dict[str, Any]]:
    """Rows shaped like the gateway's for a small answered request (ids time-ordered)."""
    out = []
    for i in range(start, start + count):
        row = {
            "id": f"chatcmpl-{int(now * 1e6) + i:x}a1b2c3d4{i & 0xFFFF:04x}",
            "ts": now + i * 1e-4, "user_id": 1 + i % 8, "key_id": f"key_{1 + i % 8:08d}", "protocol": "openai",
            "model": "bench-model", "provider": "fake", "upstream_model": "bench-model", "stream": bool(i & 1),
            "status": "ok", "http_status": 200, "weight": 1, "input_tokens": 12 + i % 7, "output_tokens": 9,
            "latency_ms": 1.5 + (i % 13) * 0.1, "ttft_ms": 1.2,
        }
        out.append(fit({**LEDGER_DEFAULTS, **row}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fill", type=int, default=200_000, help="rows written first, untimed")
    ap.add_argument("--batch", type=int, default=400, help="rows a flush (0.2 s at 2,000 req/s)")
    ap.add_argument("--flushes", type=int, default=50, help="timed flushes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp))
        db.create_user("bench", "bench")
        writer = LedgerWriter(db, Path(tmp) / "dead.jsonl")
        now = time.time() - 3600
        n = 0
        while n < args.fill:
            writer.write(rows(n, 5000, now))
            n += 5000
        per_row = []
        for _ in range(args.flushes):
            batch = rows(n, args.batch, now)
            n += args.batch
            t0 = time.thread_time()
            writer.write(batch)
            per_row.append((time.thread_time() - t0) / args.batch * 1e6)
        per_row.sort()
        print(f"{args.batch} rows a flush, {args.fill:,} rows before: thread CPU per row "
              f"median {statistics.median(per_row):.1f} µs, p10 {per_row[len(per_row) // 10]:.1f}, "
              f"p90 {per_row[len(per_row) * 9 // 10]:.1f}")


if __name__ == "__main__":
    main()
