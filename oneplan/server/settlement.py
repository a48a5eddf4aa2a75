"""Settlement that cannot be skipped: exactly one ledger row and exactly one of settle or
release for every admitted request, whatever is raised where.

``Settlement`` is an async context manager around everything that happens after admission::

    async with Settlement(books, call) as s:
        result, served = await router.complete(...)
        s.served = served
        ...
        s.ok(usage, completion)

Leaving the block without ``ok``/``failed`` settles by what ended it:

* a ``OneplanError`` -> ``failed`` with that error (the reservation is released);
* any other ``Exception`` (a bug, a renderer error) -> ``failed`` as an internal error, logged
  once with its traceback (the reservation is released);
* cancellation or ``GeneratorExit`` (the client went away, shutdown) -> ``cancelled``: charged
  what the upstream reported producing, the row journaled and the counters settled
  synchronously (a cancelled task cannot be trusted to finish an ``await``);
* normal exit -> nothing if the block handed the call on (``hand_off()``, a stream that the
  relay now owns), else an internal error: the block forgot to settle.

A stream body that is never iterated (the client hung up before the first byte) is settled by
``abandon()``, which the event stream calls when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from oneplan.errors import InternalError, OneplanError
from oneplan.metering.plans import Amounts
from oneplan.metering.rows import LedgerRow, Status
from oneplan.protocols.canonical import Accumulator, Usage
from oneplan.routing.router import Served

if TYPE_CHECKING:
    from oneplan.metering.counters import Counters
    from oneplan.metering.ledger import Ledger
    from oneplan.server.pipeline import Call

log = logging.getLogger("oneplan")

OK, FAILED, CANCELLED, REFUSED = Status.OK, Status.FAILED, Status.CANCELLED, Status.REFUSED


@dataclass(slots=True)
class Books:
    """Where a finished request goes: its ledger row, the quota counters, and the observers
    (metrics, alerts). What a settlement needs of the gateway, and nothing more."""

    ledger: Ledger
    counters: Counters
    observe: Callable[[LedgerRow], None]
    store_prompts: bool = False

    async def journaled(self) -> None:
        """Until every row recorded so far is in the journal: an error answer or a refusal,
        like an answer, leaves only once its row outlives ``kill -9``. A failed write is logged
        by the ledger (the row reaches the database from memory); the error goes out all the
        same - it is an error either way."""
        with contextlib.suppress(Exception):
            await self.ledger.durable()


class Settlement:
    __slots__ = ("_handed_off", "acc", "books", "call", "done", "served")

    def __init__(self, books: Books, call: Call) -> None:
        self.books = books
        self.call = call
        self.served: Served | None = None
        self.acc: Accumulator | None = None  # a stream's deltas so far, for a cancellation
        self.done = False
        self._handed_off = False

    async def __aenter__(self) -> Settlement:
        self._handed_off = False
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.done:
            return
        if exc is None:
            if not self._handed_off:
                await self.failed(InternalError())
                log.error("request %s left its settlement block without settling", self.call.id)
        elif isinstance(exc, OneplanError):
            await self.failed(exc)
        elif isinstance(exc, Exception):
            log.error("internal error serving %s", self.call.id, exc_info=(exc_type, exc, tb))  # type: ignore[arg-type]
            await self.failed(InternalError(exc))
        else:  # CancelledError, GeneratorExit, KeyboardInterrupt: no awaiting from here
            self.cancelled()

    def hand_off(self) -> None:
        """The block ends well but the call goes on (a stream the relay now settles)."""
        self._handed_off = True

    # -- the three ways a call ends ---------------------------------------------------------

    def ok(self, usage: Usage, completion: str | None = None) -> None:
        """The request succeeded: its row is recorded and its counters settled. Its answer -
        a whole one, or a stream's closing frames - leaves only once the row is in the journal
        (one write for every row settled in this event-loop tick): the answer carries the
        journal and the HTTP protocol holds it back (``Answer.journal``, ``EventStream.journal``)."""
        if self.done:
            return
        self.done = True
        row = self.row(OK, 200, usage)
        if completion is not None and self.books.store_prompts:
            row["completion"] = completion
        self.books.ledger.record(row)
        self.books.counters.settle(self.call.reservation, Amounts.of_row(row))
        self.books.observe(row)

    async def failed(self, error: OneplanError) -> None:
        """A failed request costs the user nothing: the reservation goes back."""
        if self.done:
            return
        self.done = True
        row = self.row(FAILED, error.status, Usage())
        cause = getattr(error, "cause", None)
        row["error_class"] = type(error).__name__ + (f":{type(cause).__name__}" if cause is not None else "")
        row["attempts"] = getattr(error, "attempts", row.get("attempts", 1))
        failed_at = getattr(error, "deployment", None)  # the last deployment tried, if any was
        if self.served is None and failed_at is not None:
            row["provider"] = failed_at.provider
            row["upstream_model"] = failed_at.upstream
        self.books.ledger.record(row)
        self.books.observe(row)
        await self.books.counters.release(self.call.reservation)
        await self.books.journaled()  # the error answer waits for its row, as an answer does

    def cancelled(self) -> None:
        """The client went away: charge what the upstream reported producing (README, "Ledger
        policy"). Synchronous (no awaiting in a cancelled task): journal and counters both."""
        if self.done:
            return
        self.done = True
        usage = (self.acc.usage if self.acc is not None else None) or Usage()
        row = self.row(CANCELLED, 499, usage)
        self.books.ledger.record_now(row)
        self.books.counters.settle(self.call.reservation, Amounts.of_row(row))
        self.books.observe(row)

    def abandon(self) -> None:
        """The stream closed without its body ever running: settle as cancelled."""
        self.cancelled()

    # -- the row ----------------------------------------------------------------------------

    def row(self, status: Status, http_status: int, usage: Usage) -> LedgerRow:
        call, served = self.call, self.served
        model = served.model if served else call.entry
        cost = model.cost(usage)
        row: LedgerRow = {
            "id": call.id,
            "ts": call.started,
            "user_id": call.key.user_id,
            "key_id": call.key.key_id,
            "protocol": call.protocol.name,
            "model": model.name,
            "stream": call.request.stream,
            "status": status,
            "http_status": http_status,
            "weight": call.reservation.weight if status in (OK, CANCELLED) else 0,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost": cost if status in (OK, CANCELLED) else 0.0,
            "credits": credits_of(model, usage) if status in (OK, CANCELLED) else 0.0,
            "multiplier": call.reservation.multiplier,
            "latency_ms": (time.perf_counter() - call.t0) * 1000.0,
            "ttft_ms": None if call.ttft is None else call.ttft * 1000.0,
        }
        r = call.reservation
        if r.field:  # for a replica replaying this row after a crash (not a ledger column)
            row["_field"] = r.field
            row["_res"] = r.value
        if served is not None:
            row["provider"] = served.deployment.provider
            row["upstream_model"] = served.deployment.upstream
            row["attempts"] = served.attempts
        if self.books.store_prompts:
            try:
                row["prompt"] = orjson.dumps(call.request.messages).decode()
            except (TypeError, orjson.JSONEncodeError):
                row["prompt"] = None  # not encodable (it never reached a provider either)
        return row


def credits_of(model: Any, usage: Usage) -> float:
    """Plan credits of ``usage`` on ``model``, by token class (before any peak multiplier)."""
    read, write = usage.cached_tokens, usage.cache_write_tokens
    return float(model.credits.of(max(0, usage.input_tokens - read - write), read, write, usage.output_tokens))


def spawn_close(stream: Any) -> None:
    """Close an async iterator from synchronous code (it owns an upstream connection)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        asyncio.get_running_loop().create_task(aclose())
