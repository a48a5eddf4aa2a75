"""A write-ahead journal for ledger rows: the reason a request whose answer reached the client
survives ``kill -9`` while the database still receives rows in batches.

Each process appends one JSON line per finished request to its own segment file with a single
``write(2)`` on an ``O_APPEND`` descriptor *before* the last bytes of the answer are sent. Once
``write`` returns, the line is in the kernel's page cache and outlives the process. The batch
flusher later copies rows into the database and deletes the segment. A process holds an
exclusive ``flock`` on its live segment, so recovery (at start-up, or by the CLI) only replays
segments whose writer is gone; replaying is idempotent because rows are keyed by request id.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson


class Segment:
    __slots__ = ("fd", "path", "rows")

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"ledger-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.rows = 0

    def append(self, line: bytes, rows: int = 1) -> None:
        view = memoryview(line)
        while view:  # a write to a file takes it all; a short one (a full disk) raises
            written = os.write(self.fd, view)
            view = view[written:]
        self.rows += rows

    def abandon(self) -> None:
        """Stop appending without deleting: the rows could not be flushed, so the next start
        (or ``oneplan usage``) replays them. The lock goes with the descriptor."""
        os.close(self.fd)

    def retire(self) -> None:
        """The rows are in the database: the segment is no longer needed."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


class Journal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.segment = Segment(directory)

    def append(self, row: dict[str, Any]) -> None:
        """Durable against the process dying once this returns (one ``write`` syscall)."""
        self.segment.append(orjson.dumps(row) + b"\n")

    def append_lines(self, data: bytes, rows: int) -> None:
        """Several rows' lines in one ``write``."""
        self.segment.append(data, rows)

    def rotate(self) -> Segment | None:
        """Start a new segment; return the old one (to retire once its rows are flushed)."""
        if self.segment.rows == 0:
            return None
        old, self.segment = self.segment, Segment(self.directory)
        return old

    def close(self) -> None:
        self.segment.retire()


def recover(directory: Path, insert: Callable[[Sequence[dict[str, Any]]], None]) -> int:
    """Replay segments left by processes that died; return the number of rows replayed."""
    if not directory.is_dir():
        return 0
    replayed = 0
    for path in sorted(directory.glob("ledger-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive and will flush it
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
            rows = []
            for line in data.splitlines():
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a torn final line of a write that never returned: not promised
            insert(rows)
            replayed += len(rows)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return replayed
