"""The usage ledger: one row per admitted request, durable before the answer completes,
written to the database in batches - and never wedged by one bad row.

``record()`` makes the row fit its columns (``fit``), appends it to the journal (one ``write``
syscall, microseconds) and queues it; a background task flushes queued rows to the database
every ``flush_seconds`` in one transaction, off the event loop. A crash between the two loses
nothing: the journal is replayed at the next start.

When a batch fails:

* the database is unreachable (``OperationalError`` and friends): the rows stay queued and in the
  journal, the flush is retried, one log line per outage;
* the database refused a value: the batch is written row by row; a row it still refuses is set
  aside in ``ledger_dead`` (or, if even that fails, ``ledger-dead.jsonl`` in the data directory)
  and every other row is written. ``oneplan ledger status`` and ``/metrics`` show set-aside rows.

Nothing here logs a row's values: prompts, completions and keys never reach the log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from oneplan.metering.rows import LedgerRow
from oneplan.store import schema
from oneplan.store.db import Database
from oneplan.store.journal import Journal, Segment, recover

log = logging.getLogger("oneplan.ledger")

# The generation of replayed rows the database already held: older than every rebuild's (those
# start at 1), so the shared counters take them as read by a rebuild, never as missed by one.
UNKNOWN_GENERATION = "0"

LEDGER_DEFAULTS: dict[str, Any] = {
    "provider": None,
    "upstream_model": None,
    "error_class": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_tokens": 0,
    "cache_write_tokens": 0,  # in input_tokens, like cached_tokens
    "reasoning_tokens": 0,
    "cost": 0.0,
    "credits": 0.0,
    "multiplier": 1.0,
    "ttft_ms": None,
    "attempts": 1,
    "prompt": None,
    "completion": None,
    "anomalies": None,
}

INT_MAX = 2**31 - 1  # INTEGER on PostgreSQL (and what every database here holds)
FLOAT_MAX = 1e15

# Per column: how to make a value fit. Built once from the schema.
_INTS = tuple(c.name for c in schema.ledger.columns if isinstance(c.type, Integer) and c.name != "user_id")
_FLOATS = tuple(c.name for c in schema.ledger.columns if isinstance(c.type, Float))
_STRINGS = tuple(
    (c.name, c.type.length or 10_000) for c in schema.ledger.columns if isinstance(c.type, String) and not isinstance(c.type, Text)
)
_TEXTS = tuple(c.name for c in schema.ledger.columns if isinstance(c.type, Text))

OnCommit = Callable[[list[dict[str, Any]], str], None]
_UNREACHABLE = (OperationalError, InterfaceError)
_T = TypeVar("_T")


def fit(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every value inside what its column holds; what had to change is named in
    ``anomalies`` (e.g. ``input_tokens clamped``). Token counts beyond a 32-bit integer are an
    upstream's bug, not usage to bill."""
    notes: list[str] = []
    for name in _INTS:
        value = row.get(name)
        if value is None or (type(value) is int and 0 <= value <= INT_MAX):
            continue
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            number = 0
        clamped = min(max(number, 0), INT_MAX)
        if clamped != value:
            notes.append(f"{name} clamped")
        row[name] = clamped
    for name in _FLOATS:
        value = row.get(name)
        if value is None or (type(value) is float and math.isfinite(value) and abs(value) <= FLOAT_MAX):
            continue
        try:
            real = float(value)
        except (TypeError, ValueError, OverflowError):
            real = 0.0
        if not math.isfinite(real):
            real = 0.0
        row[name] = min(max(real, -FLOAT_MAX), FLOAT_MAX)
        notes.append(f"{name} clamped")
    for name, length in _STRINGS:
        value = row.get(name)
        if value is None or (type(value) is str and len(value) <= length and "\x00" not in value):
            continue
        text = value if isinstance(value, str) else str(value)
        if "\x00" in text:
            text = text.replace("\x00", "")
            notes.append(f"{name} NUL removed")
        if len(text) > length:
            text = text[:length]
            notes.append(f"{name} truncated")
        row[name] = text
    for name in _TEXTS:
        value = row.get(name)
        if isinstance(value, str) and "\x00" in value:
            row[name] = value.replace("\x00", "")  # PostgreSQL text cannot hold NUL
            notes.append(f"{name} NUL removed")
    if notes:
        row["anomalies"] = "; ".join(dict.fromkeys(notes))[:200]
    return row


def _why(exc: BaseException) -> str:
    """An error's class and SQLSTATE: never its message, which can quote values."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return f"{type(orig).__name__}" + (f" (SQLSTATE {state})" if state else "")


class LedgerWriter:
    """Writes rows to the database, synchronously (the ledger's writer thread, or the CLI):
    a refused value never blocks the other rows."""

    def __init__(self, db: Database, dead_file: Path) -> None:
        self.db = db
        self.dead_file = dead_file
        self.set_aside = 0  # rows this process could not write and set aside
        self.replayed: list[tuple[list[dict[str, Any]], str]] = []  # replayed rows, by generation

    def write(self, rows: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], str]]:
        """Write ``rows``; return them grouped by the counter generation each committed under.
        Raises only when the database is unreachable (then nothing is lost: retried)."""
        try:
            return [(rows, self.db.insert_ledger(rows))]
        except _UNREACHABLE:
            raise
        except DBAPIError:
            pass  # some row's value was refused: find it, write the rest
        groups: list[tuple[list[dict[str, Any]], str]] = []
        refused: list[tuple[dict[str, Any], str]] = []
        for row in rows:
            try:
                groups.append(([row], self.db.insert_ledger([row])))
            except _UNREACHABLE:
                raise
            except Exception as exc:
                refused.append((row, _why(exc)))
        if refused:
            self._set_aside(refused)
        return groups

    def write_replayed(self, rows: Sequence[dict[str, Any]]) -> None:
        """Rows read back from a journal (an older process may not have fitted them). Rows
        the database already held - the predecessor committed them and was killed before it
        dropped the journal - are grouped under ``UNKNOWN_GENERATION``: what generation they
        were committed under is not known here, so no rebuild can be said to have missed them."""
        fitted = [fit({**LEDGER_DEFAULTS, **row}) for row in rows]
        before = self.db.outcomes([str(row["id"]) for row in fitted]).keys()  # the rows already there
        if before:
            self.replayed.append(([row for row in fitted if row["id"] in before], UNKNOWN_GENERATION))
            fitted = [row for row in fitted if row["id"] not in before]
        if fitted:
            self.replayed += self.write(fitted)

    def replay(self, journal_dir: Path) -> int:
        return recover(journal_dir, self.write_replayed)

    def _set_aside(self, refused: list[tuple[dict[str, Any], str]]) -> None:
        self.set_aside += len(refused)
        for row, why in refused:
            log.error("ledger row %s refused by the database (%s): set aside", row.get("id"), why)
        try:
            self.db.set_aside(refused)
        except Exception as exc:
            log.error("setting rows aside in the database failed too (%s): writing %s", _why(exc), self.dead_file)
            with open(self.dead_file, "ab") as f:
                for row, why in refused:
                    f.write(orjson.dumps({"error": why, "row": row}, default=str) + b"\n")
                f.flush()
                os.fsync(f.fileno())


class Ledger:
    def __init__(
        self, db: Database, journal_dir: Path, flush_seconds: float = 0.2, on_commit: OnCommit | None = None
    ) -> None:
        self.db = db
        self.journal_dir = journal_dir
        self.writer = LedgerWriter(db, journal_dir.parent / "ledger-dead.jsonl")
        self.flush_seconds = flush_seconds
        self.on_commit = on_commit
        self.on_replay: Callable[[list[tuple[list[dict[str, Any]], str]]], Awaitable[None]] | None = None
        self.journal: Journal | None = None
        self._pending: list[dict[str, Any]] = []
        self._lines: list[bytes] = []  # journal lines of this tick, written when it ends
        self._scheduled = False
        # Who is told of this tick's journal write (``when_durable``; ``durable`` waits on a
        # future of its own, so a waiter that is cancelled cancels only its own).
        self._then: list[Callable[[Exception | None], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # a flush returns only once earlier rows are written
        # One writer thread: inserts never run side by side, and their allocations stay in
        # one malloc arena instead of spreading over the default executor's threads.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneplan-ledger")
        self._replay_due = False
        self._down = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def set_aside(self) -> int:
        return self.writer.set_aside

    async def start(self) -> int:
        """Replay what an earlier process left; never blocks start-up (a database that cannot
        take the rows now gets them later, from the flush loop)."""
        replayed = await self._replay()
        self.journal = Journal(self.journal_dir)
        self._task = asyncio.create_task(self._run(), name="ledger-flush")
        return replayed

    async def _replay(self) -> int:
        try:
            replayed = await self._in_writer(self.writer.replay, self.journal_dir)
        except Exception as exc:
            self._replay_due = True
            log.error("replaying earlier journals failed (%s); will retry", _why(exc))
            return 0
        self._replay_due = False
        await self.adopt_replayed()
        if replayed:
            log.info("replayed %d ledger rows from an earlier process's journal", replayed)
        return replayed

    async def adopt_replayed(self) -> None:
        """Hand replayed rows to whoever settles their requests (the shared counters)."""
        if self.on_replay is None or not self.writer.replayed:
            return
        groups, self.writer.replayed = self.writer.replayed, []
        try:
            await self.on_replay(groups)
        except Exception as exc:
            self.writer.replayed[:0] = groups
            self._replay_due = True
            log.error("settling replayed requests failed (%s); will retry", type(exc).__name__)

    def record(self, row: LedgerRow) -> None:
        """Queue ``row`` for the journal (written once this event-loop tick ends, in one
        ``write`` with every row settled in the tick: ``durable()`` waits for it) and for the
        database."""
        full = fit({**LEDGER_DEFAULTS, **row})
        assert self.journal is not None, "Ledger.start() was not awaited"
        self._lines.append(orjson.dumps(full) + b"\n")
        self._pending.append(full)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._write_lines)
        if len(self._pending) >= 1000:
            self._wake.set()

    def record_now(self, row: LedgerRow) -> None:
        """``record`` and the journal write at once (a cancelled task cannot wait a tick)."""
        self.record(row)
        self._write_lines()

    async def durable(self) -> None:
        """Return once every row recorded so far is in the journal (outlives ``kill -9``)."""
        if not self._lines:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def told(failed: Exception | None) -> None:
            if waiter.done():  # its task was cancelled meanwhile
                return
            if failed is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(failed)

        self._then.append(told)
        await waiter

    def when_durable(self, then: Callable[[Exception | None], None]) -> None:
        """``durable`` for a caller that does not wait in a task (the HTTP protocol holding an
        answer's last bytes back, ``server/hot.py``): ``then(None)`` once every row recorded so
        far is in the journal - at once if it is - or ``then(error)`` if writing them failed."""
        if not self._lines:
            then(None)
            return
        self._then.append(then)

    def _write_lines(self) -> None:
        self._scheduled = False
        lines, self._lines = self._lines, []
        thens, self._then = self._then, []
        failed: Exception | None = None
        if lines:
            assert self.journal is not None
            try:
                self.journal.append_lines(b"".join(lines), len(lines))
            except Exception as exc:
                log.error("writing %d ledger rows to the journal failed (%s)", len(lines), _why(exc))
                failed = exc
        for then in thens:
            try:
                then(failed)
            except Exception:  # one answer's failure is not the other rows' or answers'
                log.exception("answering after the journal write failed")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                if self._replay_due:
                    await self._replay()
                if self._down:
                    self._down = False
                    log.warning("the database takes ledger rows again")
            except Exception as exc:
                if not self._down:
                    self._down = True
                    log.error("the database is not taking ledger rows (%s); they stay in the journal", _why(exc))

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
            groups = await self._in_writer(self.writer.write, rows)
        except BaseException:
            self._pending[:0] = rows
            if old is not None:
                old.abandon()
            raise
        if old is not None:
            old.retire()
        if self.on_commit is not None:
            for group, generation in groups:
                self.on_commit(group, generation)

    async def _in_writer(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def close(self) -> None:
        if self.journal is not None:
            self._write_lines()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await self.flush()
        except Exception as exc:
            log.error("the last ledger flush failed (%s); the journal keeps the rows for the next start", _why(exc))
            if self.journal is not None:
                self.journal.segment.abandon()
                self.journal = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        self._writer.shutdown(wait=True)


def dead_file_rows(data_dir: Path) -> int:
    path = data_dir / "ledger-dead.jsonl"
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def journal_rows(journal_dir: Path) -> tuple[int, int]:
    """(segments, rows) waiting in journals (of this and other processes)."""
    segments = rows = 0
    for path in journal_dir.glob("ledger-*.jsonl") if journal_dir.is_dir() else ():
        segments += 1
        with open(path, "rb") as f:
            rows += sum(1 for _ in f)
    return segments, rows


__all__ = ["LEDGER_DEFAULTS", "Ledger", "LedgerWriter", "dead_file_rows", "fit", "journal_rows"]

