"""What ``oneplan serve`` does on SIGTERM, and why it exits 0.

uvicorn already does the graceful part: on SIGTERM it stops accepting connections, lets the
requests in flight finish for up to ``timeout_graceful_shutdown`` (``server.shutdown_grace_seconds``),
cancels what is left (those streams are recorded as ``cancelled``: ``pipeline.relay``), then runs
the lifespan shutdown, where ``Gateway.close()`` flushes the ledger to the database.

Since 0.29, uvicorn then restores the signal handlers that were installed before it started and
re-raises the signal it caught, so that the process "dies of SIGTERM" (exit status -15 / 143).
Supervisors (systemd, Kubernetes, docker) treat that as a failure of a service that was asked to
stop and did so cleanly. ``install()`` sets the handler uvicorn restores to one that exits 0: by
the time it runs, the shutdown has completed.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def install() -> None:
    """Call before ``uvicorn.run`` in the main thread."""
    signal.signal(signal.SIGTERM, _exit_cleanly)
