"""The usage ledger: one row per admitted request, durable before the answer completes,
written to the database in batches.

``record()`` appends the row to the journal (one ``write`` syscall, microseconds) and queues it;
a background task flushes queued rows to the database every ``flush_seconds`` in one
transaction, off the event loop. A crash between the two loses nothing: the journal is replayed
at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from oneplan.store.db import Database
from oneplan.store.journal import Journal, Segment, recover

log = logging.getLogger("oneplan.ledger")

LEDGER_DEFAULTS: dict[str, Any] = {
    "provider": None,
    "upstream_model": None,
    "error_class": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_tokens": 0,
    "reasoning_tokens": 0,
    "cost": 0.0,
    "ttft_ms": None,
    "attempts": 1,
    "prompt": None,
    "completion": None,
}


class Ledger:
    def __init__(self, db: Database, journal_dir: Path, flush_seconds: float = 0.2) -> None:
        self.db = db
        self.journal_dir = journal_dir
        self.flush_seconds = flush_seconds
        self.journal: Journal | None = None
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # a flush returns only once earlier rows are written
        # One writer thread: inserts never run side by side, and their allocations stay in
        # one malloc arena instead of spreading over the default executor's threads.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneplan-ledger")
        self.flushed = 0

    async def start(self) -> int:
        replayed = await self._in_writer(recover, self.journal_dir, self.db.insert_ledger)
        if replayed:
            log.info("replayed %d ledger rows from an earlier process's journal", replayed)
        self.journal = Journal(self.journal_dir)
        self._task = asyncio.create_task(self._run(), name="ledger-flush")
        return replayed

    def record(self, row: dict[str, Any]) -> None:
        """Make ``row`` durable now and queue it for the database."""
        full = {**LEDGER_DEFAULTS, **row}
        assert self.journal is not None, "Ledger.start() was not awaited"
        self.journal.append(full)
        self._pending.append(full)
        if len(self._pending) >= 1000:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("ledger flush failed; rows stay in the journal and will be retried")

    async def flush(self) -> None:
        """Move queued rows to the database, then drop the journal segment that held them."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self.journal is None:
            return
        rows, self._pending = self._pending, []
        old: Segment | None = self.journal.rotate()
        try:
            await self._in_writer(self.db.insert_ledger, rows)
        except BaseException:
            self._pending[:0] = rows
            if old is not None:
                old.abandon()
            raise
        self.flushed += len(rows)
        if old is not None:
            old.retire()

    async def _in_writer(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        self._writer.shutdown(wait=True)

