"""Console endpoints on a big ledger: seed N ledger rows (default 10 million) into SQLite and/or
PostgreSQL, build the roll-up from them, start a real ``oneplan serve`` on that database and
time every console endpoint over HTTP (p50 / p99 of sequential requests on one keep-alive
connection). Not part of the test suite.

    python bench/console_bench.py --rows 1000000 --db sqlite
    python bench/console_bench.py --db both            # 10M rows each: a long run

Seeding goes straight to the driver (``executemany`` on SQLite, ``COPY`` on PostgreSQL); the
roll-up is then built by the same SQL ``rollup.rebuild()`` that heals a database without one
(the test suite checks it equals the one the ledger writer maintains row by row).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oneplan.metering import rollup  # noqa: E402
from oneplan.store.db import LEDGER_COLUMNS, Database  # noqa: E402

MODELS = ["qwen3.5-plus", "qwen3.5-flash", "glm-5", "kimi-k2.5", "MiniMax-M2.5", "qwen3-coder", "deepseek-v4", "local-qwen"]
PROVIDERS = ["dashscope", "zhipu", "moonshot", "minimax", "openrouter"]
PROTOCOLS = ["anthropic", "openai_chat", "responses"]
ERRORS = ["UpstreamTimeout", "UpstreamUnavailable", "UpstreamRateLimited", "UpstreamRejected"]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def catalog(database_url: str) -> str:
    models = "\n".join(
        f'[models."{m}"]\nprovider = "{PROVIDERS[i % len(PROVIDERS)]}"\ninput_price = 2.0\noutput_price = 8.0\n'
        for i, m in enumerate(MODELS)
    )
    providers = "\n".join(f'[providers.{p}]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n' for p in PROVIDERS)
    return f"""[server]
database_url = "{database_url}"

{providers}
{models}
[plans.pro]
requests_per_5h = 2000
requests_per_week = 20000
tokens_per_month = 2000000000
"""


def rows(n: int, users: list[int], keys: dict[int, str], days: int, seed: int = 7) -> Any:
    """Ledger rows as tuples in LEDGER_COLUMNS order, in batches."""
    rnd = random.Random(seed)
    now = time.time()
    start = now - days * 86400
    batch: list[tuple[Any, ...]] = []
    # Some users are much busier than others, like a real team.
    weights = [1.0 / (i + 1) ** 0.5 for i in range(len(users))]
    # ...and each has habits: one tool (protocol), a main model and a second one.
    habits = {u: (PROTOCOLS[rnd.randrange(3)], MODELS[rnd.randrange(len(MODELS))], MODELS[rnd.randrange(len(MODELS))]) for u in users}
    picks = rnd.choices(users, weights, k=min(n, 1_000_000))
    for i in range(n):
        user = picks[i % len(picks)]
        ts = start + (now - start) * (i / n) + rnd.random()
        protocol, main, second = habits[user]
        r = rnd.random()
        model = main if r < 0.75 else second if r < 0.95 else MODELS[rnd.randrange(len(MODELS))]
        r = rnd.random()
        status, error, http = ("ok", None, 200)
        if r < 0.03:
            status, error, http = "failed", ERRORS[rnd.randrange(len(ERRORS))], 502
        elif r < 0.04:
            status, error, http = "refused", "QuotaExceeded:5h", 429
        elif r < 0.05:
            status = "cancelled"
        ok = status in ("ok", "cancelled")
        inp = rnd.randrange(200, 40000) if ok else 0
        out = rnd.randrange(20, 4000) if ok else 0
        row = {
            "id": f"req_{i:012d}{secrets.token_hex(2)}", "ts": ts, "user_id": user, "key_id": keys[user],
            "protocol": protocol if rnd.random() < 0.9 else PROTOCOLS[i % 3], "model": model, "provider": PROVIDERS[MODELS.index(model) % len(PROVIDERS)],
            "upstream_model": model, "stream": bool(i % 2), "status": status, "http_status": http, "error_class": error,
            "weight": 1 if ok else 0, "input_tokens": inp, "output_tokens": out, "cached_tokens": inp // 3,
            "reasoning_tokens": out // 4, "cost": (inp * 2 + out * 8) / 1e6, "latency_ms": rnd.lognormvariate(7, 0.8),
            "ttft_ms": rnd.lognormvariate(6, 0.6) if ok else None, "attempts": 1, "prompt": None, "completion": None,
        }
        batch.append(tuple(row[c] for c in LEDGER_COLUMNS))
        if len(batch) == 50_000:
            yield batch
            batch = []
    if batch:
        yield batch


def seed(db: Database, n: int, users: int, days: int) -> tuple[str, str, float, float]:
    """(admin key, the busiest user's key, seconds to seed, seconds to build the roll-up)."""
    admin = db.ensure_admin_key() or ""
    ids, keys, first_key = [], {}, ""
    for u in range(users):
        user, key_id, key = db.create_user(f"dev{u:04d}", "pro")
        ids.append(user.id)
        keys[user.id] = key_id
        first_key = first_key or key
    t0 = time.perf_counter()
    done = 0
    if db.is_sqlite:
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            sql = f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * len(LEDGER_COLUMNS))})"
            for batch in rows(n, ids, keys, days):
                cur.executemany(sql, batch)
                raw.commit()
                done += len(batch)
                progress(done, n, t0)
        finally:
            raw.close()
    else:
        import psycopg

        url = db.engine.url
        with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
            with conn.cursor() as cur, cur.copy(f"COPY ledger ({', '.join(LEDGER_COLUMNS)}) FROM STDIN") as copy:
                for batch in rows(n, ids, keys, days):
                    for row in batch:
                        copy.write_row(row)
                    done += len(batch)
                    progress(done, n, t0)
        with db.engine.begin() as c:
            c.exec_driver_sql("ANALYZE ledger")
    seeded = time.perf_counter() - t0
    print()
    t1 = time.perf_counter()
    with db.engine.begin() as conn:
        rollup.rebuild(conn)
    if not db.is_sqlite:
        with db.engine.begin() as c:
            c.exec_driver_sql("ANALYZE usage_hourly")
    else:
        with db.engine.begin() as c:
            c.exec_driver_sql("ANALYZE")
    return admin, first_key, seeded, time.perf_counter() - t1


def progress(done: int, total: int, t0: float) -> None:
    rate = done / max(1e-9, time.perf_counter() - t0)
    print(f"\r  seeded {done:,}/{total:,} rows ({rate:,.0f} rows/s)", end="", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(config: Path, data: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneplan.cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "ONEPLAN_CONFIG": str(config), "ONEPLAN_HOME": str(data)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"oneplan serve exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if proc.stdout and select.select([proc.stdout], [], [], 0)[0]:
            proc.stdout.read1(65536)  # type: ignore[attr-defined]
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("oneplan serve did not become ready")


def signed_in_cookie(port: int, key: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/console/sign-in")
    reply = c.getresponse()
    body = reply.read().decode()
    nonce = re.search(r'name="nonce" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    presession = reply.getheader("set-cookie", "").split(";")[0]
    c.request("POST", "/console/sign-in", body=f"key={key}&nonce={nonce}",
              headers={"content-type": "application/x-www-form-urlencoded", "cookie": presession,
                       "origin": f"http://127.0.0.1:{port}", "host": f"127.0.0.1:{port}"})
    reply = c.getresponse()
    reply.read()
    return reply.getheader("set-cookie", "").split(";")[0]


def measure(port: int, path: str, headers: dict[str, str], n: int) -> tuple[float, float, int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times, size, status = [], 0, 0
    for i in range(n + 3):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        body = reply.read()
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1000)
        size, status = len(body), reply.status
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], size, status


def endpoints(port: int, admin: str, dev: str) -> list[tuple[str, str, dict[str, str]]]:
    now = time.time()
    a = {"authorization": f"Bearer {admin}"}
    d = {"authorization": f"Bearer {dev}"}
    # A page deep into the ledger: the keyset cursor of a row a week back.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", f"/admin/ledger?limit=1&until={now - 7 * 86400}", headers=a)
    first = json.loads(c.getresponse().read())["data"][0]
    deep = f"{first['ts']!r}:{first['id']}"
    return [
        ("developer", "/v1/me", d),
        ("developer", "/v1/me/series?range=7d&tz=Asia/Shanghai", d),
        ("developer", "/v1/me/series?range=90d&tz=Asia/Shanghai", d),
        ("developer", "/v1/me/models?days=90", d),
        ("developer", "/v1/me/requests?limit=200", d),
        ("developer", "/v1/me/keys", d),
        ("developer", "/console (HTML shell)", d),
        ("operator", "/admin/overview", a),
        ("operator", "/admin/series?range=7d&by=model", a),
        ("operator", "/admin/series?range=90d&by=model", a),
        ("operator", "/admin/series?range=90d&by=user", a),
        ("operator", "/admin/breakdown?by=user&days=30", a),
        ("operator", "/admin/breakdown?by=model&days=90", a),
        ("operator", "/admin/errors?days=7", a),
        ("operator", "/admin/health", a),
        ("explorer", "/admin/ledger?limit=50", a),
        ("explorer", f"/admin/ledger?limit=50&after={deep}", a),
        ("explorer", "/admin/ledger?limit=50&status=failed", a),
        ("explorer", "/admin/ledger?limit=50&status=failed&model=glm-5&protocol=anthropic", a),
        ("explorer", "/admin/ledger?limit=50&user=dev0003", a),
        ("explorer", f"/admin/ledger?limit=50&provider=zhipu&since={now - 30 * 86400}&until={now - 29 * 86400}", a),
    ]


def run(kind: str, args: argparse.Namespace, out: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"oneplan-console-bench-{kind}-"))
    pg_name = None
    if kind == "sqlite":
        url = f"sqlite:///{work / 'data' / 'oneplan.db'}"
    else:
        import psycopg

        pg_name = "oneplan_bench_" + secrets.token_hex(4)
        with psycopg.connect(PG_DSN, autocommit=True) as admin_conn:
            admin_conn.execute(f"CREATE DATABASE {pg_name}")
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
    proc = None
    try:
        print(f"{kind}: seeding {args.rows:,} ledger rows for {args.users} users over {args.days} days")
        db = Database.open(work / "data", url)
        admin, dev, seeded, built = seed(db, args.rows, args.users, args.days)
        with db.engine.connect() as c:
            rollup_rows = c.exec_driver_sql("SELECT COUNT(*) FROM usage_hourly").scalar()
        db.close()
        print(f"  seeded in {seeded:.0f} s, roll-up ({rollup_rows:,} rows) built in {built:.1f} s; starting oneplan serve")
        config = work / "oneplan.toml"
        config.write_text(catalog(url))
        t0 = time.perf_counter()
        proc, port = serve(config, work / "data")
        started = time.perf_counter() - t0
        cookie = signed_in_cookie(port, dev)
        out.append(
            f"\n### {kind}: {args.rows:,} ledger rows, {args.users} users, {args.days} days; "
            f"roll-up {rollup_rows:,} rows (built in {built:.1f} s); seeding {seeded:.0f} s; serve ready in {started:.1f} s\n"
        )
        out.append("| who | endpoint | p50 ms | p99 ms | bytes | status |\n|---|---|---:|---:|---:|---:|")
        for who, path, headers in endpoints(port, admin, dev):
            if path.startswith("/console"):
                path, headers = "/console", {"cookie": cookie}
            p50, p99, size, status = measure(port, path, headers, args.requests)
            line = f"| {who} | `{path[:90]}` | {p50:.1f} | {p99:.1f} | {size:,} | {status} |"
            print(line)
            out.append(line)
    finally:
        if proc is not None:
            os.killpg(proc.pid, 9)
            proc.wait()
        if pg_name and not args.keep:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as admin_conn:
                admin_conn.execute(f"DROP DATABASE {pg_name} WITH (FORCE)")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="ledger rows to seed (default 10M)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per endpoint")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases")
    args = parser.parse_args()
    out = [f"# Console endpoints on a big ledger ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n",
           f"`python bench/console_bench.py --rows {args.rows} --users {args.users} --days {args.days} --db {args.db}`; "
           "sequential requests on one keep-alive connection, 3 warm-up requests each."]
    for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
        run(kind, args, out)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"console-{datetime.now(UTC):%Y%m%d-%H%M%S}.md"
    path.write_text("\n".join(out) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
