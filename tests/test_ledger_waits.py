"""Who waits for a tick's journal write (``Ledger.durable``): every waiter of the tick is
released by that one write, and only once the rows are on disk; a waiter that is cancelled
stops nobody else; a failed write reaches every waiter of its tick and not the next tick's."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def started(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A started ledger on a real SQLite file and journal directory, closed afterwards."""
    ledger = Ledger(Database.open(tmp_path / "data"), tmp_path / "journal")
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.close()


def _journaled(ledger: Ledger) -> list[str]:
    return [orjson.loads(line)["id"] for path in sorted(ledger.journal_dir.glob("ledger-*.jsonl"))
            for line in path.read_bytes().splitlines()]


async def _settle(ledger: Ledger, n: int, seen: dict[int, list[str]]) -> None:
    ledger.record(_row(n))  # type: ignore[arg-type]
    await ledger.durable()
    seen[n] = _journaled(ledger)  # what was on disk when this waiter was let go


def test_one_write_lets_every_waiter_of_the_tick_go_once_its_rows_are_on_disk(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path) as ledger:
            seen: dict[int, list[str]] = {}
            tasks = [asyncio.create_task(_settle(ledger, n, seen)) for n in range(5)]
            await asyncio.sleep(0)  # all five record in this tick and wait
            tasks[2].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert tasks[2].cancelled()
            everyone = [f"chatcmpl-wait{n:04d}" for n in range(5)]
            # The cancelled waiter's row was still written; the others went only after it was.
            assert _journaled(ledger) == everyone
            assert seen == {n: everyone for n in (0, 1, 3, 4)}

    asyncio.run(main())


def test_a_failed_journal_write_reaches_every_waiter_of_its_tick_and_not_the_next(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path) as ledger:
            assert ledger.journal is not None
            segment = ledger.journal.segment
            writable = os.dup(segment.fd)
            read_only = os.open(os.devnull, os.O_RDONLY)
            seen: dict[int, list[str]] = {}
            try:
                os.dup2(read_only, segment.fd)  # the next write(2) fails with EBADF
                failing = [asyncio.create_task(_settle(ledger, n, seen)) for n in range(3)]
                outcomes = await asyncio.gather(*failing, return_exceptions=True)
                assert [type(o) for o in outcomes] == [OSError] * 3
                os.dup2(writable, segment.fd)
                await _settle(ledger, 9, seen)  # the next tick writes as usual
                assert seen[9] == ["chatcmpl-wait0009"]
            finally:
                os.close(read_only)
                os.close(writable)

    asyncio.run(main())


@pytest.mark.parametrize("rows", [0, 1])
def test_durable_with_nothing_recorded_returns_at_once(tmp_path: Path, rows: int) -> None:
    async def main() -> None:
        async with started(tmp_path) as ledger:
            if rows:
                ledger.record_now(_row(1))  # type: ignore[arg-type]
            await asyncio.wait_for(ledger.durable(), 1)

    asyncio.run(main())


def test_when_durable_calls_back_once_the_ticks_rows_are_on_disk_or_with_the_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path) as ledger:
            seen: list[tuple[object, list[str]]] = []

            def then(failed: Exception | None) -> None:
                seen.append((failed, _journaled(ledger)))

            def broken(failed: Exception | None) -> None:
                raise RuntimeError("one answer's bug")

            ledger.when_durable(then)  # nothing recorded: at once
            assert seen == [(None, [])]
            ledger.record(_row(1))  # type: ignore[arg-type]
            ledger.when_durable(broken)  # stops neither the write nor the next callback
            ledger.when_durable(then)
            assert len(seen) == 1  # held until the tick's write
            await ledger.durable()
            assert seen[1] == (None, ["chatcmpl-wait0001"])
            assert ledger.journal is not None
            segment = ledger.journal.segment
            writable = os.dup(segment.fd)
            read_only = os.open(os.devnull, os.O_RDONLY)
            try:
                os.dup2(read_only, segment.fd)
                ledger.record(_row(2))  # type: ignore[arg-type]
                ledger.when_durable(then)
                with pytest.raises(OSError):
                    await ledger.durable()
            finally:
                os.dup2(writable, segment.fd)
                os.close(read_only)
                os.close(writable)
            failed, on_disk = seen[2]
            assert isinstance(failed, OSError) and on_disk == ["chatcmpl-wait0001"]

    asyncio.run(main())
