"""Redis counters that heal: a Redis that lost its state is rebuilt from the ledger exactly once
across replicas, with no admission in between and no double count; requests in flight across
the loss are counted once; a dead replica's requests in flight are reconciled; an unreachable or
silent Redis is a fast ``BackendUnavailable``. Real Redis (127.0.0.1:6379, a key prefix per
test), real SQLite ledger."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from oneplan.errors import BackendUnavailable, QuotaExceeded
from oneplan.metering.counters import Reservation, as_amounts
from oneplan.metering.entries import Pending
from oneplan.metering.ledger import LEDGER_DEFAULTS, LedgerWriter, fit
from oneplan.metering.redis_counters import RedisCounters
from oneplan.metering.resp import Unanswered
from oneplan.metering.windows import Periods
from oneplan.routing.catalog import Plan
from oneplan.store.db import Database
from tests.support.gateway import ManualClock
from tests.support.services import ReplyCutter, require_redis

T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()
PLAN = Plan("p", requests_per_5h=1000, tokens_per_month=10**9)


@pytest.fixture(autouse=True)
def redis_running() -> None:
    require_redis()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path)
    yield database
    database.close()


def row(request_id: str, user_id: int, ts: float, *, status: str = "ok", tokens: int = 0) -> dict[str, Any]:
    return fit({
        **LEDGER_DEFAULTS, "id": request_id, "ts": ts, "user_id": user_id, "key_id": "k", "protocol": "openai_chat",
        "model": "m1", "stream": False, "status": status, "http_status": 200, "weight": 1 if status == "ok" else 0,
        "latency_ms": 1.0, "input_tokens": tokens, "output_tokens": 0,
    })


async def counters(prefix: str, db: Database, clock: ManualClock, **kw: Any) -> RedisCounters:
    c = RedisCounters("redis://127.0.0.1:6379/0", clock, Periods("UTC"), prefix=prefix, **kw)
    await c.start(db)
    return c


async def wipe(c: RedisCounters) -> None:
    """What a Redis restarted without persistence looks like to this prefix: nothing."""
    keys = [k async for k in c.redis.scan_iter(match=f"{c.prefix}:*", count=1000)]
    if keys:
        await c.redis.delete(*keys)


async def used(c: RedisCounters, user_id: int, plan: Plan = PLAN) -> dict[str, float]:
    return {s.window: s.used for s in await c.states(user_id, plan)}


async def kill(c: RedisCounters) -> None:
    """SIGKILL: no goodbye, nothing more sent, the heartbeat simply stops."""
    for task in c._tasks:
        task.cancel()
    await c.lean.aclose()
    await c.redis.aclose()


async def heartbeat_expired(c: RedisCounters, replica: str) -> None:
    """Until another replica's heartbeat has expired (what a reconciler waits for)."""
    deadline = time.monotonic() + 10
    while await c.redis.exists(f"{c.prefix}:hb:{replica}"):
        assert time.monotonic() < deadline, "the dead replica's heartbeat never expired"
        await asyncio.sleep(0.05)


async def rebuild_begun(c: RedisCounters) -> str:
    """Until a rebuild is in progress; its generation."""
    deadline = time.monotonic() + 10
    while (marker := await c.redis.get(c._rebuild_key)) is None:
        assert time.monotonic() < deadline, "the rebuild never began"
        await asyncio.sleep(0.01)
    return str(marker)


def test_rebuild_once_across_replicas_and_again_after_redis_loses_its_state(db: Database) -> None:
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    db.insert_ledger([row(f"old{i}", 7, T0 - 60 - i) for i in range(5)])

    async def run() -> None:
        a = await counters(prefix, db, clock)
        b = await counters(prefix, db, clock)
        assert a.rebuilds + b.rebuilds == 1  # the second replica found the counters in place
        assert (await used(b, 7))["5h"] == 5
        await wipe(a)
        # Both replicas admit at once against the empty Redis: one rebuild, nobody bypasses it.
        results = await asyncio.gather(*(x.admit(7, PLAN, 1, f"n{i}") for i, x in enumerate([a, b] * 10)))
        assert all(r.gen == results[0].gen for r in results)
        assert a.rebuilds + b.rebuilds == 2
        assert (await used(a, 7))["5h"] == 5 + 20
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_a_request_in_flight_across_the_loss_is_counted_exactly_once(db: Database) -> None:
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        a = await counters(prefix, db, clock)
        b = await counters(prefix, db, clock)
        # r1: admitted before the loss, its row committed after the rebuild read the ledger.
        r1 = await a.admit(3, PLAN, 1, "r1")
        # r2: admitted before the loss, its row committed before the rebuild read the ledger.
        r2 = await a.admit(3, PLAN, 1, "r2")
        a.settle(r2, tokens=40, cost=0.0)
        gen_r2 = db.insert_ledger([row("r2", 3, T0, tokens=40)])
        await wipe(a)
        await b.admit(3, PLAN, 1, "b1")  # detects the loss, rebuilds: r2 is in the ledger, r1 is not
        a.settle(r1, tokens=10, cost=0.0)
        gen_r1 = db.insert_ledger([row("r1", 3, T0, tokens=10)])
        a.committed([row("r2", 3, T0)], gen_r2)  # the rebuild counted it: skipped
        a.committed([row("r1", 3, T0)], gen_r1)  # nobody counted it: charged late, once
        await a.flush()
        windows = await used(b, 3)
        assert windows["5h"] == 3  # r1 + r2 + b1
        assert windows["tokens_month"] == 50
        assert r1.gen == gen_r1  # replanted into the new generation while the rebuild ran
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_a_replant_never_races_the_settlement_of_the_same_request(db: Database) -> None:
    """A replica learns of a new generation (and replants what it has in flight) while the
    settlement of one of those requests is on its way to Redis: the request is counted once."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        a = RedisCounters("redis://127.0.0.1:6379/0", clock, Periods("UTC"), prefix=prefix)
        a.flush_seconds = 3600  # a flushes and learns only when the test says so
        await a.start(db)
        b = await counters(prefix, db, clock)
        r1 = await a.admit(3, PLAN, 1, "r1")
        await wipe(a)
        await b.admit(3, PLAN, 1, "b1")  # rebuilds: r1 is not in the ledger
        a.settle(r1, tokens=10, cost=0.0)
        gen = db.insert_ledger([row("r1", 3, T0, tokens=10)])  # committed after the rebuild's read
        a.committed([row("r1", 3, T0)], gen)
        # a sends r1's settlement (charged late, in full) while an admission on a learns the
        # new generation and replants what is still outstanding.
        await asyncio.gather(a.flush(), a.admit(3, PLAN, 1, "a2"))
        await a.flush()
        windows = await used(b, 3)
        assert windows["5h"] == 3  # b1 + r1 + a2: r1 once
        assert windows["tokens_month"] == 10
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def _settled_reply(data: bytes) -> bool:
    return b"$2\r\nok\r\n" in data  # a SETTLE or RECHARGE reply saying a request was charged


def test_a_late_settlement_whose_reply_is_lost_is_charged_once(db: Database) -> None:
    """A request admitted before Redis lost its state and committed after the rebuild read the
    ledger is charged in full by its settlement - with no in-flight entry to take as the token.
    Redis runs that settlement, and the reply is lost: the client sends it again. Charged once."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        hop = ReplyCutter()
        a = RedisCounters(await hop.start(), clock, Periods("UTC"), prefix=prefix)
        a.flush_seconds = 3600  # a flushes only when the test says so
        await a.start(db)
        b = await counters(prefix, db, clock)
        try:
            r1 = await a.admit(3, PLAN, 1, "r1")
            await wipe(a)
            await b.admit(3, PLAN, 1, "b1")  # rebuilds: r1 is not in the ledger
            a.settle(r1, tokens=10, cost=0.0)
            await a.flush()  # r1 stops running; nothing to settle yet
            gen = db.insert_ledger([row("r1", 3, T0, tokens=10)])  # committed after the rebuild's read
            a.committed([row("r1", 3, T0)], gen)
            hop.cut_next(_settled_reply)
            for _ in range(3):  # sent again, as the flusher does on its next round
                try:
                    await a.flush()
                    break
                except Unanswered:
                    pass
            assert hop.cuts == 1  # the settlement ran once with its answer lost
            windows = await used(b, 3)
            assert windows["5h"] == 2, f"r1 charged {windows['5h'] - 1:g} times"  # b1 + r1
            assert windows["tokens_month"] == 10
        finally:
            await a.aclose()
            await b.aclose()
            hop.close()

    asyncio.run(run())


def test_a_replant_whose_reply_is_lost_is_charged_once(db: Database) -> None:
    """A replica learns that Redis lost its state and replants what it has in flight; Redis
    runs the replant and the reply is lost, so the client sends it again. Charged once."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        hop = ReplyCutter()
        a = RedisCounters(await hop.start(), clock, Periods("UTC"), prefix=prefix, heartbeat_seconds=3600)
        a.flush_seconds = 3600  # a learns of the new generation only when the test says so
        await a.start(db)
        b = await counters(prefix, db, clock)
        try:
            r1 = await a.admit(3, PLAN, 1, "r1")
            await wipe(a)
            await b.admit(3, PLAN, 1, "b1")  # rebuilds: r1 is not in the ledger
            hop.cut_next(lambda data: data == b":1\r\n")  # the replant's answer
            await a._watch_generation()
            assert hop.cuts == 1
            assert r1.gen == await b.redis.get(f"{prefix}:gen")  # replanted into the new generation
            assert (await used(b, 3))["5h"] == 2, "r1 replanted twice"  # b1 + r1
            a.settle(r1, tokens=10, cost=0.0)
            gen = db.insert_ledger([row("r1", 3, T0, tokens=10)])
            a.committed([row("r1", 3, T0)], gen)
            await a.flush()
            windows = await used(b, 3)
            assert windows["5h"] == 2 and windows["tokens_month"] == 10
            assert await b.redis.hlen(f"{prefix}:{{3}}:if") == 1  # only b1's
        finally:
            await a.aclose()
            await b.aclose()
            hop.close()

    asyncio.run(run())


def test_settlements_go_in_slices_and_a_lost_reply_mid_backlog_charges_each_once(
    db: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog of settlements is sent in slices (a long script would hold up every replica's
    admissions); the reply to one slice is lost and the flush fails there. Sent again, every
    request is charged its real usage once."""
    import oneplan.metering.redis_counters as rc

    monkeypatch.setattr(rc, "_SETTLE_BATCH", 4)
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        hop = ReplyCutter()
        a = RedisCounters(await hop.start(), clock, Periods("UTC"), prefix=prefix, heartbeat_seconds=3600)
        a.flush_seconds = 3600
        await a.start(db)
        try:
            reservations = [await a.admit(3, PLAN, 1, f"r{i}") for i in range(10)]
            for i, r in enumerate(reservations):
                a.settle(r, tokens=i + 1, cost=0.0)
            await a.flush()  # they stop running; nothing committed yet
            rows = [row(f"r{i}", 3, T0, tokens=i + 1) for i in range(10)]
            a.committed(rows, db.insert_ledger(rows))
            replies = 0

            def second_slice(data: bytes) -> bool:
                nonlocal replies
                replies += data.startswith(b"*4\r\n$2\r\nok")
                return replies == 2

            hop.cut_next(second_slice)
            with pytest.raises(Unanswered):
                await a.flush()
            assert hop.cuts == 1
            await a.flush()
            windows = await used(a, 3)
            assert windows["5h"] == 10 and windows["tokens_month"] == sum(range(1, 11))
            assert await a.redis.hlen(f"{prefix}:{{3}}:if") == 0
        finally:
            await a.aclose()
            hop.close()

    asyncio.run(run())


@pytest.mark.parametrize("why", ["tombstone", "rebuilt"])
def test_a_replayed_row_is_charged_again_once_though_the_reply_is_lost(db: Database, why: str) -> None:
    """A dead replica's request whose row turns up later, replayed from its journal, is charged
    again when nobody counts it: a reconciler released it without a row (``tombstone``), or
    Redis lost its state and the rebuild read the ledger before the row was in it (``rebuilt``).
    Once - even when that charge's reply is lost and the script runs again."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        dead = await counters(prefix, db, clock, heartbeat_seconds=0.3)
        lost = await dead.admit(9, PLAN, 1, "lost")
        await kill(dead)  # SIGKILL
        hop = ReplyCutter()
        alive = RedisCounters(await hop.start(), clock, Periods("UTC"), prefix=prefix)
        try:
            if why == "rebuilt":
                await wipe(alive)
            await heartbeat_expired(alive, dead.replica)
            await alive.start(db)  # reconciles (or rebuilds): "lost" has no row, nobody counts it
            assert alive.reconciled == (1 if why == "tombstone" else 0)
            assert (await used(alive, 9))["5h"] == 0
            replayed = {**row("lost", 9, T0, tokens=20), "_field": lost.field, "_res": lost.value}
            gen = db.insert_ledger([row("lost", 9, T0, tokens=20)])
            hop.cut_next(_settled_reply)
            await alive.adopt([([replayed], gen)])
            assert hop.cuts == 1  # the charge ran once with its answer lost
            windows = await used(alive, 9)
            assert windows["5h"] == 1, f"the replayed row charged {windows['5h']:g} times"
            assert windows["tokens_month"] == 20
        finally:
            await alive.aclose()
            hop.close()

    asyncio.run(run())


@pytest.mark.parametrize("how", ["committed before the loss", "replanted after the loss"])
def test_a_replayed_row_that_was_already_counted_is_not_charged_again(db: Database, tmp_path: Path, how: str) -> None:
    """A replica is killed with a journal whose row was counted all the same - and a restarted
    process replays it after Redis lost its state:

    * ``committed before the loss``: the row reached the database before the kill (the journal
      is dropped only after the commit), so the rebuild read it;
    * ``replanted after the loss``: the row was not committed, and the replica had replanted its
      request into the new generation: the entry is settled from the replayed row.

    Either way the replayed row is charged once, not a second time as a row no rebuild read."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        dead = await counters(prefix, db, clock)
        dead.flush_seconds = 3600
        r1 = await dead.admit(9, PLAN, 1, "r1")
        journaled = {**row("r1", 9, T0, tokens=30), "_field": r1.field, "_res": r1.value}  # as settled
        if how == "committed before the loss":
            db.insert_ledger([row("r1", 9, T0, tokens=30)])
        await wipe(dead)
        alive = await counters(prefix, db, clock)  # rebuilds from the ledger
        if how == "replanted after the loss":
            await dead._watch_generation()
            assert r1.gen == await alive.redis.get(f"{prefix}:gen")
        assert (await used(alive, 9))["5h"] == 1
        await kill(dead)
        writer = LedgerWriter(db, tmp_path / "dead.jsonl")  # the restarted process's replay
        writer.write_replayed([journaled])
        await alive.adopt(writer.replayed)
        windows = await used(alive, 9)
        assert windows["5h"] == 1, f"the replayed row charged {windows['5h']:g} times"
        assert windows["tokens_month"] == 30
        assert await alive.redis.hlen(f"{prefix}:{{9}}:if") == 0
        await alive.aclose()

    asyncio.run(run())


def test_a_dead_replicas_requests_in_flight_are_reconciled_with_the_ledger(db: Database) -> None:
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        dead = await counters(prefix, db, clock, heartbeat_seconds=0.3)
        answered = await dead.admit(9, PLAN, 1, "answered")
        await dead.admit(9, PLAN, 1, "failed")
        await dead.admit(9, PLAN, 1, "lost")  # killed mid-flight: no ledger row at all
        dead.settle(answered, tokens=50, cost=0.0)
        db.insert_ledger([row("answered", 9, T0, tokens=50), row("failed", 9, T0, status="failed")])
        await kill(dead)  # no settlement sent
        alive = RedisCounters("redis://127.0.0.1:6379/0", clock, Periods("UTC"), prefix=prefix)
        await heartbeat_expired(alive, dead.replica)
        await alive.start(db)  # a replica joining reconciles what dead ones left
        assert alive.reconciled == 3
        windows = await used(alive, 9)
        assert windows["5h"] == 1 and windows["tokens_month"] == 50  # exactly the ledger
        assert await alive.reconcile() == 0  # once
        await alive.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("how", ["replanted", "admitted"])
def test_a_replica_that_dies_after_redis_lost_its_state_is_still_reconciled(db: Database, how: str) -> None:
    """Redis restarts empty - losing the registry of replicas and which users each has in
    flight - and a replica then holds a request in flight (one it replants, or a new one), and
    is SIGKILLed before its next heartbeat. The entry must still be found and released by
    another replica, not charged for good."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        dead = await counters(prefix, db, clock, heartbeat_seconds=0.5)
        dead.flush_seconds = 3600
        for task in dead._tasks:
            if task.get_name() == "quota-replicas":
                task.cancel()  # no heartbeat from here on (its last one expires in 0.5 s)
        r1 = await dead.admit(9, PLAN, 1, "r1")
        if how == "admitted":  # r1 ends before the loss; the request in flight comes after it
            dead.settle(r1)
            dead.committed([row("r1", 9, T0)], db.insert_ledger([row("r1", 9, T0)]))
            await dead.flush()
        await wipe(dead)
        alive = await counters(prefix, db, clock)  # rebuilds from the ledger
        if how == "replanted":
            await dead._watch_generation()
            assert r1.gen == await alive.redis.get(f"{prefix}:gen")
        else:
            await dead.admit(9, PLAN, 1, "r2")
        counted = 1 if how == "admitted" else 0  # r1's row
        assert (await used(alive, 9))["5h"] == counted + 1
        await kill(dead)  # SIGKILL
        await heartbeat_expired(alive, dead.replica)
        assert await alive.reconcile() == 1
        assert (await used(alive, 9))["5h"] == counted  # the request in flight has no row: released
        assert await alive.redis.hlen(f"{prefix}:{{9}}:if") == 0
        await alive.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("how", ["replanted", "admitted"])
def test_a_live_replica_is_not_taken_for_dead_after_redis_lost_its_state(db: Database, how: str) -> None:
    """Redis restarts empty: every heartbeat is gone with it. A replica that replants its request
    in flight (or admits a new one) is in the registry again at once, its next heartbeat still a
    while away: another replica's reconciler must not take it for dead and give its requests back
    (their rows not committed yet) - that request's settlement would then find nothing to settle,
    and its charge would be lost for good (CI: two replicas answering 200 past a used-up plan)."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        b = await counters(prefix, db, clock, heartbeat_seconds=30)  # its next heartbeat: 10 s away
        b.flush_seconds = 3600  # b replants and settles only when the test says so
        r1 = await b.admit(3, PLAN, 1, "r1")
        await wipe(b)
        a = await counters(prefix, db, clock)  # rebuilds from the ledger: r1 has no row yet
        if how == "replanted":
            await b._watch_generation()
        else:
            await b.admit(3, PLAN, 1, "r2")  # learns the generation and replants r1 as well
        assert r1.gen == await a.redis.get(f"{prefix}:gen")
        assert await a.reconcile() == 0  # b is alive
        b.settle(r1, tokens=10, cost=0.0)
        b.committed([row("r1", 3, T0, tokens=10)], db.insert_ledger([row("r1", 3, T0, tokens=10)]))
        await b.flush()
        windows = await used(a, 3)
        assert windows["5h"] == (1 if how == "replanted" else 2)
        assert windows["tokens_month"] == 10
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_a_replica_taken_for_dead_while_it_stalled_is_still_charged_once(db: Database) -> None:
    """A live replica stalls past its heartbeat (a long pause, a partition from Redis): another
    replica reconciles its request in flight - no ledger row yet, so it gives the charge back and
    leaves a tombstone. The replica then finishes the request: its settlement finds the
    tombstone instead of the in-flight entry and charges the real usage, once."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        a = await counters(prefix, db, clock)
        b = await counters(prefix, db, clock, heartbeat_seconds=0.3)
        b.flush_seconds = 3600
        for task in b._tasks:
            if task.get_name() == "quota-replicas":
                task.cancel()  # stalled: no heartbeat from here on
        r1 = await b.admit(3, PLAN, 1, "r1")
        await heartbeat_expired(a, b.replica)
        assert await a.reconcile() == 1
        assert (await used(a, 3))["5h"] == 0  # given back
        b.settle(r1, tokens=10, cost=0.0)  # b wakes up and answers r1
        b.committed([row("r1", 3, T0, tokens=10)], db.insert_ledger([row("r1", 3, T0, tokens=10)]))
        await b.flush()
        windows = await used(a, 3)
        assert windows["5h"] == 1 and windows["tokens_month"] == 10
        b._ready.append(Pending(r1, as_amounts(r1, 10, 0.0), committed=r1.gen))  # sent again: its reply was lost
        await b.flush()
        windows = await used(a, 3)
        assert windows["5h"] == 1 and windows["tokens_month"] == 10  # once
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_a_release_while_a_rebuild_is_in_progress_gives_the_replant_back(db: Database) -> None:
    """Redis lost its state; another replica is rebuilding (its generation named, not yet
    published) and this one replants its request in flight into it. The request then fails:
    its release must take the replanted charge back out, not find "no generation" and leave
    it charged for good."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        a = await counters(prefix, db, clock)
        a.flush_seconds = 3600  # a replants only when the test says so
        b = await counters(prefix, db, clock)
        b.grace_seconds = 3.0  # the window in which replicas replant into b's rebuild
        r1 = await a.admit(3, PLAN, 1, "r1")
        await wipe(a)
        rebuilding = asyncio.create_task(b.recover())
        marker = await rebuild_begun(a)
        await a._watch_generation()  # replants r1 into the rebuild in progress
        assert r1.gen == marker and await a.redis.get(f"{prefix}:gen") is None
        await a.release(r1)  # r1 failed
        assert not rebuilding.done()
        await rebuilding
        assert (await used(b, 3))["5h"] == 0
        assert await b.redis.hlen(f"{prefix}:{{3}}:if") == 0
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_a_replayed_row_committed_during_a_rebuild_is_charged_into_it(db: Database, tmp_path: Path) -> None:
    """A killed replica's row is replayed (committed after a rebuild in progress read the
    ledger) and adopted before that rebuild is published: it is charged once, into it."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        dead = await counters(prefix, db, clock)
        b = await counters(prefix, db, clock)
        r1 = await dead.admit(3, PLAN, 1, "r1")
        journaled = {**row("r1", 3, T0, tokens=7), "_field": r1.field, "_res": r1.value}
        await kill(dead)
        await wipe(b)
        b.grace_seconds = 3.0
        rebuilding = asyncio.create_task(b.recover())
        await rebuild_begun(b)
        writer = LedgerWriter(db, tmp_path / "dead.jsonl")
        writer.write_replayed([journaled])  # committed after the rebuild's read
        await b.adopt(writer.replayed)
        assert not rebuilding.done()
        await rebuilding
        windows = await used(b, 3)
        assert windows["5h"] == 1 and windows["tokens_month"] == 7
        await b.aclose()

    asyncio.run(run())


def test_a_dead_replicas_request_replanted_into_a_rebuild_in_progress_is_settled_not_dropped(
    db: Database, tmp_path: Path,
) -> None:
    """A replica replants its request into a rebuild in progress, then dies; its row is
    replayed and adopted before the rebuild is published. The request is answered ('ok'), so
    it is settled at its real usage - not released as if it had no generation to settle in."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        dead = await counters(prefix, db, clock)
        dead.flush_seconds = 3600
        b = await counters(prefix, db, clock)
        r1 = await dead.admit(3, PLAN, 1, "r1")
        await wipe(b)
        b.grace_seconds = 3.0
        rebuilding = asyncio.create_task(b.recover())
        await rebuild_begun(b)
        await dead._watch_generation()  # replanted into the rebuild in progress
        journaled = {**row("r1", 3, T0, tokens=9), "_field": r1.field, "_res": r1.value}
        await kill(dead)
        writer = LedgerWriter(db, tmp_path / "dead.jsonl")
        writer.write_replayed([journaled])
        await b.adopt(writer.replayed)
        assert not rebuilding.done()
        await rebuilding
        windows = await used(b, 3)
        assert windows["5h"] == 1 and windows["tokens_month"] == 9
        assert await b.redis.hlen(f"{prefix}:{{3}}:if") == 0
        await b.aclose()

    asyncio.run(run())


def test_a_replica_switches_a_user_to_a_new_window_only_once_its_backfill_is_done(db: Database) -> None:
    """A user moves to a plan with a window the old one lacked (a week): one replica backfills
    it from the ledger (after waiting for the others' ledger flushes); another replica must not
    admit against the still-empty window meanwhile - its backfill returns only once it is done."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    weekly = Plan("weekly", requests_per_week=100)

    async def run() -> None:
        a = await counters(prefix, db, clock)
        b = await counters(prefix, db, clock)
        db.insert_ledger([row(f"old{i}", 5, T0 - 60 - i) for i in range(4)])  # under the old plan
        a.backfill_wait_seconds = b.backfill_wait_seconds = 0.5
        electing = asyncio.create_task(a.backfill(5, PLAN, weekly, None))
        deadline = time.monotonic() + 10
        while not [k async for k in b.redis.scan_iter(match=f"{prefix}:{{5}}:bf:*")]:
            assert time.monotonic() < deadline, "nobody took the backfill"
            await asyncio.sleep(0.01)
        await b.backfill(5, PLAN, weekly, None)  # a holds the window's backfill
        assert (await used(b, 5, weekly))["week"] == 4  # the history is there when b goes on
        await electing
        assert (await used(a, 5, weekly))["week"] == 4  # counted once
        # A marker whose holder is gone (killed mid-way; or written before markers said "done")
        # is not waited for.
        (shape,) = b.added_shapes(PLAN, weekly)
        await b.redis.set(f"{prefix}:{{6}}:bf:{shape}", "a-replica-long-gone")
        began = time.monotonic()
        await b.backfill(6, PLAN, weekly, None)
        assert time.monotonic() - began < b.backfill_wait_seconds + 5
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_released_once_even_if_a_reconciler_got_there_first(db: Database) -> None:
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        c = await counters(prefix, db, clock)
        r = await c.admit(4, PLAN, 1, "x")
        copy = Reservation(r.user_id, r.weight, r.second, [], list(r.charges), gen=r.gen, field=r.field, value=r.value)
        await c.release(r)
        await c.release(copy)  # a second release of the same request gives nothing back twice
        assert (await used(c, 4))["5h"] == 0
        await c.admit(4, PLAN, 1, "y")
        assert (await used(c, 4))["5h"] == 1
        await c.aclose()

    asyncio.run(run())


def test_a_release_cancelled_while_it_waits_is_still_made(db: Database) -> None:
    """A failed request's release waits behind a flush that Redis is slow to answer, and its
    task is cancelled (the client went away): the reservation is still given back."""
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)

    async def run() -> None:
        c = await counters(prefix, db, clock)
        c.flush_seconds = 3600
        r = await c.admit(4, PLAN, 1, "x")
        async with c._moving:  # a flush in progress
            waiting = asyncio.create_task(c.release(r))
            await asyncio.sleep(0)  # let it reach the lock
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        assert (await used(c, 4))["5h"] == 0  # states() flushes first
        assert await c.redis.hlen(f"{prefix}:{{4}}:if") == 0
        await c.aclose()

    asyncio.run(run())


def test_unreachable_redis_is_a_503_logged_once_per_outage(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed

    async def run() -> None:
        c = RedisCounters(f"redis://127.0.0.1:{port}/0", ManualClock(T0), Periods("UTC"), prefix="x")
        for _ in range(5):
            with pytest.raises(BackendUnavailable) as refused:
                await c.admit(1, PLAN, 1)
            assert refused.value.status == 503 and refused.value.headers["retry-after"] == "2"
        await c.lean.aclose()
        await c.redis.aclose()

    with caplog.at_level(logging.ERROR, logger="oneplan.quota"):
        asyncio.run(run())
    assert sum("unreachable" in r.message for r in caplog.records) == 1


def test_a_redis_that_never_answers_fails_within_the_command_timeout(db: Database) -> None:
    async def run() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 20)  # take the command, never answer
            await asyncio.sleep(30)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        c = RedisCounters(f"redis://127.0.0.1:{port}/0", ManualClock(T0), Periods("UTC"), prefix="x", command_timeout=0.4)
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await c.admit(1, PLAN, 1)
        assert time.monotonic() - t0 < 2.0
        await c.lean.aclose()
        await c.redis.aclose()
        server.close()

    asyncio.run(run())


def test_quota_still_refuses_after_a_rebuild(db: Database) -> None:
    prefix = "heal-" + secrets.token_hex(4)
    clock = ManualClock(T0)
    plan = Plan("p", requests_per_5h=3)
    db.insert_ledger([row(f"u{i}", 5, T0 - 10) for i in range(3)])

    async def run() -> None:
        c = await counters(prefix, db, clock)
        await wipe(c)
        with pytest.raises(QuotaExceeded):
            await c.admit(5, plan, 1, "z")  # a used-up plan stays used up: no bypass window
        await c.aclose()

    asyncio.run(run())
