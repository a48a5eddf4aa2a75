"""Who waits for a tick's journal write (``Ledger.durable``): every waiter of the tick is
released by that one write, and only once the rows are on disk; a waiter that is cancelled
stops nobody else; a failed write reaches every waiter of its tick and not the next tick's."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson
import pytest

from oneplan.metering.ledger import Ledger
from oneplan.store.db import Database


def _row(n: int) -> dict[str, object]:
    return {
        "id": f"chatcmpl-wait{n:04d}", "ts": time.time(), "user_id": 1, "key_id": "key_1", "protocol": "openai",
        "model": "m1", "stream": False, "status": "ok", "http_status": 200, "weight": 1, "latency_ms": 1.0,
    }


def _journaled(journal_dir: Path) -> list[str]:
    return [orjson.loads(line)["id"] for path in sorted(journal_dir.glob("ledger-*.jsonl"))
            for line in path.read_bytes().splitlines()]


async def _settle(ledger: Ledger, n: int, journal_dir: Path, seen: dict[int, list[str]]) -> None:
    ledger.record(_row(n))  # type: ignore[arg-type]
    await ledger.durable()
    seen[n] = _journaled(journal_dir)  # what was on disk when this waiter was let go


def test_one_write_lets_every_waiter_of_the_tick_go_once_its_rows_are_on_disk(tmp_path: Path) -> None:
    async def main() -> None:
        db = Database.open(tmp_path / "data")
        journal_dir = tmp_path / "journal"
        ledger = Ledger(db, journal_dir)
        await ledger.start()
        seen: dict[int, list[str]] = {}
        try:
            tasks = [asyncio.create_task(_settle(ledger, n, journal_dir, seen)) for n in range(5)]
            await asyncio.sleep(0)  # all five record in this tick and wait
            tasks[2].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert tasks[2].cancelled()
            everyone = [f"chatcmpl-wait{n:04d}" for n in range(5)]
            # The cancelled waiter's row was still written; the others went only after it was.
            assert _journaled(journal_dir) == everyone
            assert {n: ids for n, ids in seen.items()} == {n: everyone for n in (0, 1, 3, 4)}
        finally:
            await ledger.close()

    asyncio.run(main())


def test_a_failed_journal_write_reaches_every_waiter_of_its_tick_and_not_the_next(tmp_path: Path) -> None:
    async def main() -> None:
        db = Database.open(tmp_path / "data")
        journal_dir = tmp_path / "journal"
        ledger = Ledger(db, journal_dir)
        await ledger.start()
        assert ledger.journal is not None
        segment = ledger.journal.segment
        writable = os.dup(segment.fd)
        read_only = os.open(os.devnull, os.O_RDONLY)
        seen: dict[int, list[str]] = {}
        try:
            os.dup2(read_only, segment.fd)  # the next write(2) fails with EBADF
            failing = [asyncio.create_task(_settle(ledger, n, journal_dir, seen)) for n in range(3)]
            outcomes = await asyncio.gather(*failing, return_exceptions=True)
            assert [type(o) for o in outcomes] == [OSError] * 3
            os.dup2(writable, segment.fd)
            await _settle(ledger, 9, journal_dir, seen)  # the next tick writes as usual
            assert seen[9] == ["chatcmpl-wait0009"]
        finally:
            os.close(read_only)
            os.close(writable)
            await ledger.close()

    asyncio.run(main())


@pytest.mark.parametrize("rows", [0, 1])
def test_durable_with_nothing_recorded_returns_at_once(tmp_path: Path, rows: int) -> None:
    async def main() -> None:
        ledger = Ledger(Database.open(tmp_path / "data"), tmp_path / "journal")
        await ledger.start()
        try:
            if rows:
                ledger.record_now(_row(1))  # type: ignore[arg-type]
            await asyncio.wait_for(ledger.durable(), 1)
        finally:
            await ledger.close()

    asyncio.run(main())
