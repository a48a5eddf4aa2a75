"""A long run of the boundary fuzz (tests/test_fuzz_boundary.py is the ~1 minute one).

    python bench/fuzz.py                         # 20,000 cases on SQLite, seed 1
    python bench/fuzz.py --cases 50000 --seed 7 --postgres

Same generators and checks (tests/support/fuzz.py), same real gateway in front of fake
upstreams, but a failing case is recorded and the run goes on; at the end the distinct failures
(by endpoint, status and the first words of the error) are printed with one example each.
Exit status 1 if there was any.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.fakes import FakeUpstream
from tests.support import fuzz
from tests.support.gateway import Gateway
from tests.test_fuzz_boundary import Target, fuzz_catalog


def signature(failure: str) -> str:
    """Failures that differ only in numbers, ids or quoted values count once."""
    head = failure.split("\n", 1)[0][:160]
    return re.sub(r"\d+|'[^']*'|\"[^\"]*\"", "#", head)


ROUND = 2_000


def run(cases: int, run_seed: int, database_url: str | None) -> int:
    failures: dict[str, tuple[int, str]] = {}
    counts: collections.Counter[str] = collections.Counter()
    with (
        FakeUpstream(dialect="openai") as chat,
        FakeUpstream(dialect="anthropic") as messages,
        FakeUpstream(dialect="responses") as responses,
        tempfile.TemporaryDirectory() as tmp,
    ):
        catalog = fuzz_catalog(chat, messages, responses, database_url)
        with Gateway(Path(tmp), catalog) as gw:
            target = Target(gw)

            def one(case: fuzz.Case) -> None:
                counts[case.path.split("?")[0] if not case.path.startswith(("/admin/keys/", "/v1/responses/")) else case.path.rsplit("/", 1)[0] + "/{id}"] += 1
                try:
                    target.send(case)
                    for up in (chat, messages, responses):
                        up.requests.clear()  # a fake upstream records each request; the checks read none
                except AssertionError as exc:
                    key = signature(str(exc))
                    seen, example = failures.get(key, (0, f"{exc}\n  case: {case!r}"[:2000]))
                    failures[key] = (seen + 1, example)

            started = time.perf_counter()
            # Rounds of at most ROUND cases, each with a seed of its own: Hypothesis keeps every
            # case of a run in memory (past 6 GB at 20,000 cases), a round's go with it.
            for n, first in enumerate(range(0, cases, ROUND)):
                count = min(ROUND, cases - first)
                cases_of = st.one_of(fuzz.inference_cases(), fuzz.inference_cases(), fuzz.inference_cases(), fuzz.admin_cases())
                run_round = seed(run_seed * 1000 + n)(settings(
                    max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck)
                )(given(case=cases_of)(one)))
                run_round()
            elapsed = time.perf_counter() - started
    where = "PostgreSQL" if database_url else "SQLite"
    print(f"{sum(counts.values())} requests on {where} in {elapsed:.1f} s (seed {run_seed}):")
    for path, n in counts.most_common():
        print(f"  {n:6d}  {path}")
    if not failures:
        print("no failures")
        return 0
    print(f"{len(failures)} distinct failures:")
    for seen, example in sorted(failures.values(), reverse=True):
        print(f"\n[{seen}x] {example}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="use a fresh PostgreSQL database on 127.0.0.1")
    args = parser.parse_args(argv)
    if not args.postgres:
        return run(args.cases, args.seed, None)
    from tests.support.services import postgres_database

    databases: Any = postgres_database()
    try:
        return run(args.cases, args.seed, next(databases))
    finally:
        databases.close()


if __name__ == "__main__":
    sys.exit(main())
