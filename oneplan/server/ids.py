"""Request ids: the answer's id, the ledger row's primary key and the quota reservation's name."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oneplan.protocols.base import Protocol

# Unique across processes and replicas without a random draw (a syscall) per request: this
# process's random tag, then a counter. A forked worker draws its own tag in the child (no
# ``os.getpid()`` check per request: that is a syscall too).
_ID_TAG = [secrets.token_hex(4)]
_ID_COUNT = itertools.count()


def _new_tag() -> None:
    _ID_TAG[0] = secrets.token_hex(4)


os.register_at_fork(after_in_child=_new_tag)


def new_id(protocol: Protocol) -> str:
    """Time-ordered (microseconds, then this process's tag and a counter): the ledger's
    primary key then grows at its end instead of at random pages, which keeps batched inserts
    cheap as it grows."""
    return f"{protocol.id_prefix}{time.time_ns() // 1000:x}{_ID_TAG[0]}{next(_ID_COUNT) & 0xFFFF:04x}"
