"""Quota counters in Redis, for several workers or replicas sharing one plan's windows - and
that heal when Redis loses its state or a replica dies.

Admission is one Lua script (``redis_scripts.ADMIT``), atomic across every process sharing the
Redis: N concurrent requests against Q remaining admit exactly min(N, Q). Time comes from the
gateway's clock, like the in-process backend.

What keeps the counters equal to the ledger when things go wrong:

* **Redis lost its state** (restarted empty, flushed, failed over to an empty replica). The
  ``gen`` key is missing, and every admission checks it inside its script, so no request is
  ever admitted against empty counters. The replica that sees it first takes the rebuild lock,
  reads the ledger under a database lock that orders it against every ledger flush, bumps the
  database's counter generation in the same transaction, loads the counters and sets ``gen``;
  the others wait for ``gen`` (bounded: then a 503; ``rebuild.py``). A request admitted before the loss is
  either in that read (its ledger row was committed before it) or charged by its own replica
  when its row is committed later (``late`` in ``SETTLE``): never both, never neither.
* **Worst cases** are reserved at admission in every window (requests, credits, tokens, cost),
  so concurrent requests never overshoot; the real usage replaces the reservation in batches
  after the request's ledger row is in the database (``committed``), at most
  ``flush_seconds`` later, and what a killed replica had not sent is found again from its
  in-flight entries (whose value names every window it charged, and how much).
* **A replica killed with SIGKILL** leaves in-flight entries (``P:U:if``) behind. Every replica
  keeps a heartbeat; entries of a replica whose heartbeat is gone are reconciled by another
  (under a lock): a request whose ledger row says it was answered is settled with its row's
  tokens and cost, any other gives its weight back (``replicas.py``; the entries' text form is
  ``entries.py``). A Redis that lost its state lost every heartbeat too: a replica that enters
  the registry again (its first admission or replant after the loss) sets its heartbeat in the
  same script, so it is never taken for dead in between. One taken for dead all the same (it
  stalled past its heartbeat) still settles: the reconciler's tombstone stands in for the
  in-flight entry it removed.
* **Redis unreachable**: admissions fail fast with ``BackendUnavailable`` (a 503 with
  ``Retry-After`` in the caller's protocol), logged once per outage; releases and settlements
  are kept and retried; service resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, cast

from oneplan.errors import BackendUnavailable
from oneplan.metering.counters import (
    Charge,
    Counters,
    Demand,
    Reservation,
    as_amounts,
    concurrency_refusal,
    exhausts,
    legacy_demand,
    refusal,
    too_big,
)
from oneplan.metering.entries import Entry, Pending, decode, encode, entry_of, moves
from oneplan.metering.plans import Amounts, Plan
from oneplan.metering.rebuild import Rebuild
from oneplan.metering.redis_scripts import ADMIT, RECHARGE, RELEASE, REPLANT, SETTLE
from oneplan.metering.replicas import Replicas
from oneplan.metering.resp import LeanRedis, RespError, Unanswered
from oneplan.metering.windows import Clock, Periods, WindowState

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("oneplan.quota")

# Settlements per SETTLE script: Redis runs nothing else while a script runs, so a backlog (after
# an outage) goes in slices that keep every replica's admissions flowing between them.
_SETTLE_BATCH = 500


Rows = Sequence[tuple[Any, ...]]  # see store.db.Database.charged_since


class _Decoded:
    """The reads this module makes, typed as what its pool (``decode_responses=True``) gives
    back: redis-py types every reply ``bytes | str``, whatever the pool decodes."""

    __slots__ = ("_client",)

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def get(self, name: str) -> str | None:
        return cast("str | None", await self._client.get(name))

    async def smembers(self, name: str) -> set[str]:
        return cast("set[str]", await self._client.smembers(name))

    async def hgetall(self, name: str) -> dict[str, str]:
        return cast("dict[str, str]", await self._client.hgetall(name))

    async def hkeys(self, name: str) -> list[str]:
        return cast("list[str]", await self._client.hkeys(name))

    async def hget(self, name: str, key: str) -> str | None:
        return cast("str | None", await self._client.hget(name, key))


class LedgerView(Protocol):
    """What the counters read from the ledger (``store.db.Database`` implements it)."""

    def charged_since(self, since: float, user_ids: Iterable[int] | None = None) -> Rows:
        """Charged rows since ``since``, of ``user_ids`` only when given."""

    def snapshot_for_counters(self, since: float) -> tuple[Rows, str]:
        """Charged rows since ``since`` and a new counter generation, in one transaction that
        no ledger flush can interleave with."""

    def outcomes(self, ids: Sequence[str]) -> dict[str, tuple[str, Amounts]]:
        """Ledger rows by request id: (status, the real usage)."""


class RedisCounters(Counters):
    def __init__(
        self,
        url: str,
        clock: Clock,
        periods: Periods,
        prefix: str = "oneplan",
        max_connections: int = 64,
        *,
        heartbeat_seconds: float = 10.0,
        rebuild_wait_seconds: float = 15.0,
        command_timeout: float = 2.0,
    ) -> None:
        super().__init__(clock, periods)
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        # A bounded pool that waits for a free connection (the default one raises "Too many
        # connections" under load); a burst queues here instead of failing. Pooled connections
        # outlive a Redis restart: a command on a dead one is retried on a fresh one.
        pool = redis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=max_connections, timeout=10,
            socket_timeout=command_timeout * 5, socket_connect_timeout=command_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self.redis = redis.Redis(connection_pool=pool)
        self.decoded = _Decoded(self.redis)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, RespError, TimeoutError)
        self._unanswered: tuple[type[BaseException], ...] = (*self._errors, asyncio.CancelledError)  # or cancelled
        self.lean = LeanRedis(url, command_timeout=command_timeout)  # the per-request round trip
        self.prefix = prefix
        self.replica = secrets.token_hex(6)
        self.heartbeat_seconds = heartbeat_seconds
        self.rebuild_wait_seconds = rebuild_wait_seconds
        self.flush_seconds = 0.1
        self.view: LedgerView | None = None
        self._admit = self.redis.register_script(ADMIT)
        self._release = self.redis.register_script(RELEASE)
        self._settle = self.redis.register_script(SETTLE)
        self._replant_script = self.redis.register_script(REPLANT)
        self._recharge = self.redis.register_script(RECHARGE)
        self.grace_seconds = 0.3  # a rebuild waits this long for other replicas to replant
        self.backfill_wait_seconds = 1.0  # > every replica's ledger flush (server.ledger_flush_seconds)
        self._outstanding: dict[str, Reservation] = {}  # admitted, not yet fully settled or released
        self._committed_gen: dict[str, str] = {}  # field -> generation its row committed under
        self._replanted: dict[str, str] = {}  # field -> generation it was replanted into
        self._gen_seen: str | None = None
        self._pending: dict[str, Pending] = {}  # field -> settled, row not yet committed
        self._ready: list[Pending] = []  # rows committed: to send to Redis
        self._releases: list[Reservation] = []  # releases Redis did not take yet
        self._doubtful: dict[str, tuple[int, float]] = {}  # field -> (user, since): admissions with no answer
        # Settling, releasing and replanting this replica's requests never interleave: a replant
        # that ran while a settlement or release of the same request was on its way to Redis
        # charged the request's reservation again, for good.
        self._moving = asyncio.Lock()
        self._finished: dict[int, list[str]] = {}  # user -> requests settled, still "running" in Redis
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False
        self.rebuilds = 0  # rebuilds this replica did (observability, tests)
        self.reconciled = 0  # requests of dead replicas this one settled or released
        self.given_back = 0  # charges of admissions whose answer was lost, released
        self.replicas = Replicas(self)
        self.rebuild = Rebuild(self)

    # -- keys -------------------------------------------------------------------------------

    def _base(self, user_id: int) -> str:
        return f"{self.prefix}:{{{user_id}}}"

    @property
    def _gen_key(self) -> str:
        return f"{self.prefix}:gen"

    @property
    def _registry(self) -> str:
        return f"{self.prefix}:replicas"

    @property
    def _rebuild_key(self) -> str:
        return f"{self.prefix}:rebuild"  # names a rebuild in progress

    def _users_key(self, replica: str) -> str:
        """The users with requests in flight on ``replica``."""
        return f"{self.prefix}:r:{replica}:u"

    def _heartbeat_key(self, replica: str) -> str:
        return f"{self.prefix}:hb:{replica}"

    @property
    def _heartbeat_ms(self) -> int:
        return max(1, int(self.heartbeat_seconds * 1000))  # Redis refuses PX 0 (and fails the script)

    # -- admission --------------------------------------------------------------------------

    async def admit(self, user_id: int, plan: Plan, demand: Demand | int, request_id: str = "") -> Reservation:
        return await self._admit_or_probe(user_id, plan, demand, request_id, probe=False)

    async def _admit_or_probe(
        self, user_id: int, plan: Plan, demand: Demand | int, request_id: str, *, probe: bool
    ) -> Reservation:
        if not isinstance(demand, Demand):
            demand = legacy_demand(plan, demand)
        for _ in range(3):
            now = self.clock()
            charges = self.charges(plan, demand, now)
            field = f"{self.replica}:{request_id or secrets.token_hex(8)}"
            finished = [] if probe else self._finished.pop(user_id, [])
            try:
                result = await self._call_admit(user_id, plan, demand, charges, now, field, finished, probe)
                status = int(result[0])
                if status == -1:
                    await self.recover()
                    continue
            except self._unanswered as exc:
                if finished:
                    self._finished.setdefault(user_id, []).extend(finished)
                if not probe and isinstance(exc, Unanswered | asyncio.CancelledError):
                    # No answer is not a refusal: the script may have run (a reply that timed
                    # out, a connection lost after the command went, the caller cancelled - a
                    # client gone, a shutdown). Nobody sends a ledger row, so a charge made all
                    # the same is given back here. (A command that never went out - Redis down
                    # - is not recorded: an outage must not grow this.)
                    self._doubtful[field] = (user_id, time.monotonic())
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise self._unavailable(exc) from exc
            self._up()
            if status == 3:
                raise concurrency_refusal(int(plan.concurrency or 0))
            by_name = {c.window.name: c for c in charges}
            if status == 0:
                exhausted, fixed = [], {}
                for i in range(1, len(result), 4):
                    name, used, frees, need = result[i], float(result[i + 1]), result[i + 2], float(result[i + 3])
                    w = by_name[name].window
                    exhausted.append(WindowState(name, used, w.limit, float(frees) if frees else now, w.unit))
                    fixed[name] = need
                used_up = [s for s in exhausted if exhausts(s, fixed[s.window])]
                if used_up:
                    raise refusal(used_up, now)
                state = exhausted[0]
                raise too_big(state, fixed[state.window], demand.requested, now)
            if status == 2:
                name, used, frees, need = result[1], float(result[2]), result[3], float(result[4])
                w = by_name[name].window
                state = WindowState(name, used, w.limit, float(frees) if frees else now, w.unit)
                raise too_big(state, need, demand.requested, now)
            gen, output = str(result[1]), int(float(result[2]))
            states = []
            for j, c in enumerate(charges):
                used, frees = float(result[3 + 2 * j]), result[4 + 2 * j]
                states.append(WindowState(
                    c.window.name, used, c.window.limit, float(frees) if frees else None, c.window.unit, c.span,
                    c.window.kind,
                ))
            granted = None if output < 0 else output
            for c in charges:
                c.amount = c.fixed + c.per_output * (granted or 0)
            lowered = (
                demand.requested
                if granted is not None and demand.requested is not None and granted < demand.requested else None
            )
            binding = None
            if lowered is not None:
                binding = min(
                    (c for c in charges if c.per_output > 0),
                    key=lambda c: (c.window.limit - next(s.used for s in states if s.window == c.window.name)),
                ).window.name
            reservation = Reservation(
                user_id, demand.weight, int(now), states, charges, output=granted, lowered_from=lowered,
                binding=binding, multiplier=demand.multiplier, gen=gen, field=field,
                value=f"{encode(charges)}|{int(now)}|{output}|{gen}",
            )
            if probe:
                return reservation
            self._outstanding[field] = reservation
            if gen != self._gen_seen:
                # The request is admitted: replanting older ones must not fail it (its reservation
                # is charged and would leak). If Redis drops now, the flusher replants later.
                try:
                    await self._learned(gen)
                except self._errors as exc:
                    self._unavailable(exc)
                except asyncio.CancelledError:
                    reservation.settled = True  # the caller never gets it: give it back
                    self._releases.append(reservation)
                    raise
            return reservation
        raise BackendUnavailable("The quota counters are being rebuilt; try again shortly.", retry_after=2)

    async def _call_admit(
        self, user_id: int, plan: Plan, demand: Demand, charges: list[Charge], now: float, field: str,
        finished: list[str], probe: bool,
    ) -> Any:
        base = self._base(user_id)
        args: list[Any] = [
            repr(now), field, user_id, -1 if plan.concurrency is None else plan.concurrency,
            -1 if demand.requested is None else demand.requested, plan.min_output_tokens,
            1 if plan.on_exceed == "refuse" else 0, encode(charges), base, 1 if probe else 0,
            self._heartbeat_ms, len(finished), *finished, len(charges),
        ]
        for c in charges:
            w = c.window
            args += [
                "r" if c.rolling else "p", c.key, repr(c.fixed), repr(c.per_output),
                w.seconds if c.rolling else int(c.end), repr(w.limit), 1 if w.budget else 0, w.name,
            ]
        return await self.lean.evalsha(
            self._admit.sha, ADMIT,
            [
                self._gen_key, f"{base}:if", f"{base}:run", self._users_key(self.replica), self._registry,
                self._heartbeat_key(self.replica),
            ],
            args,
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        if not self._down:
            self._down = True
            log.error("Redis is unreachable (%s): requests get 503 until it answers again", type(exc).__name__)
        return BackendUnavailable(
            f"The quota store is unreachable ({type(exc).__name__}); try again shortly.", retry_after=2
        )

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis answers again: admitting requests")

    # -- settling ---------------------------------------------------------------------------

    def settle(self, reservation: Reservation, tokens: int | Amounts = 0, cost: float = 0.0) -> None:
        """Keep the reservation; the real usage replaces it in Redis once its ledger row is in
        the database (``committed``), batched - a round trip per request would cost more than
        the request. It stops counting against the concurrency limit at once (the next
        admission of the same user from this replica tells Redis)."""
        if reservation.settled:
            return
        reservation.settled = True
        self._pending[reservation.field] = Pending(reservation, as_amounts(reservation, tokens, cost))
        self._finished.setdefault(reservation.user_id, []).append(reservation.field)

    def committed(self, rows: Iterable[dict[str, Any]], generation: str) -> None:
        for row in rows:
            field = f"{self.replica}:{row['id']}"
            entry = self._pending.pop(field, None)
            if entry is None:
                continue
            self._committed_gen[field] = generation
            replanted = self._replanted.get(field)
            if replanted is not None and int(generation) < int(replanted):
                # Committed before the rebuild read the ledger, so the read counted it - and it
                # was replanted too: take the replant back.
                self._releases.append(entry.reservation)
                continue
            entry.committed = generation
            self._ready.append(entry)

    def _done(self, field: str) -> None:
        self._outstanding.pop(field, None)
        self._committed_gen.pop(field, None)
        self._replanted.pop(field, None)

    async def release(self, reservation: Reservation) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        try:
            async with self._moving:
                await self._release_now(reservation.user_id, reservation.field, entry_of(reservation))
        except self._errors as exc:
            self._unavailable(exc)
            self._releases.append(reservation)  # retried by the flusher
            return
        except asyncio.CancelledError:
            # Cancelled waiting behind a flush (a client gone, a shutdown), or with the command
            # on its way: the flusher releases it (a release runs once, however often it is sent).
            self._releases.append(reservation)
            raise
        self._done(reservation.field)

    async def _release_now(self, user_id: int, field: str, entry: Entry, tombstone: bool = False) -> None:
        base = self._base(user_id)
        await self.lean.evalsha(
            self._release.sha, RELEASE,
            [self._gen_key, f"{base}:if", f"{base}:gone", f"{base}:run", self._rebuild_key],
            [field, entry.gen, 1 if tombstone else 0, entry.second, repr(self.clock()), base,
             *moves(entry, None, full=True)],
        )

    async def flush(self) -> None:
        """Send committed settlements and retry releases (the flusher does this on a timer)."""
        async with self._moving:
            await self._flush()

    async def _flush(self) -> None:
        releases, self._releases = self._releases, []
        for i, r in enumerate(releases):
            try:
                await self._release_now(r.user_id, r.field, entry_of(r))
            except self._errors:
                self._releases.extend(releases[i:])
                raise
            self._done(r.field)
        if self._doubtful:
            await self._give_back_doubtful()
        finished, self._finished = self._finished, {}
        if finished:
            try:
                pipe = self.redis.pipeline(transaction=False)
                for user_id, fields in finished.items():
                    pipe.hdel(f"{self._base(user_id)}:run", *fields)
                await pipe.execute()
            except self._errors:
                for user_id, fields in finished.items():
                    self._finished.setdefault(user_id, []).extend(fields)
                raise
        ready, self._ready = self._ready, []
        waiting: list[Pending] = []
        try:
            while ready:
                waiting += await self._settle_batch(ready[:_SETTLE_BATCH])
                del ready[:_SETTLE_BATCH]
        finally:
            self._ready[:0] = waiting + ready  # what waits for a rebuild, and what was not sent

    async def _settle_batch(self, batch: list[Pending]) -> list[Pending]:
        """One ``SETTLE`` for ``batch``; returns what must wait for a rebuild. Through the lean
        connection: a settlement a request costs ~4 µs to encode there, ~12 through redis-py."""
        now = repr(self.clock())
        args: list[Any] = []
        for e in batch:
            r = e.reservation
            late = e.committed != r.gen
            args += [
                self._base(r.user_id), r.field, e.committed, 0 if late else 1, r.second, now,
                *moves(entry_of(r), e.amounts, full=late),
            ]
        replies = await self.lean.evalsha(self._settle.sha, SETTLE, [self._gen_key], args)
        waiting = []
        for e, reply in zip(batch, replies, strict=True):
            if reply == "wait":
                waiting.append(e)
            else:
                self._done(e.reservation.field)
        return waiting

    async def _give_back_doubtful(self) -> None:
        """Admissions whose answer never came: an in-flight entry Redis holds for one was
        charged with nobody to settle it - release it. Each is looked for (all in one round
        trip) until a look made a few command timeouts after it found nothing: by then the
        command cannot still be waiting in Redis (a paused or busy server runs it late)."""
        now = time.monotonic()
        doubtful = list(self._doubtful.items())
        pipe = self.redis.pipeline(transaction=False)
        for field, (user_id, _since) in doubtful:
            pipe.hget(f"{self._base(user_id)}:if", field)
        values = cast("list[str | None]", await pipe.execute())
        for (field, (user_id, since)), value in zip(doubtful, values, strict=True):
            if value is not None:
                await self._release_now(user_id, field, decode(value))
                self.given_back += 1
                log.warning("gave back a charge Redis made for an admission whose answer was lost")
            if value is not None or now - since > 3 * self.lean.command_timeout:
                del self._doubtful[field]

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self._watch_generation()
                await self.flush()
            except self._errors as exc:
                self._unavailable(exc)

    async def _watch_generation(self) -> None:
        """Notice a rebuild (in progress or done) and replant what this replica has in flight."""
        if not self._outstanding:
            return
        gen = await self.decoded.get(self._gen_key)
        if gen is None:
            gen = await self.decoded.get(self._rebuild_key)
        if gen is not None and gen != self._gen_seen:
            await self._learned(gen)

    async def _learned(self, gen: str) -> None:
        """A new generation: requests admitted under an older one are charged again in it,
        unless the rebuild's read of the ledger already counted them."""
        async with self._moving:
            await self._replant(gen)

    async def _replant(self, gen: str) -> None:
        stale = [
            r for f, r in self._outstanding.items()
            if r.gen != gen and int(self._committed_gen.get(f, gen)) >= int(gen)
        ]
        if stale:
            now = self.clock()
            args: list[Any] = [gen, self._heartbeat_ms]
            for r in stale:
                entry = entry_of(r)
                args += [
                    self._base(r.user_id), r.field, r.user_id, r.second, repr(now), r.value.rsplit("|", 1)[0],
                    *moves(entry, None, full=True),
                ]
            keys = [
                self._gen_key, self._rebuild_key, self._users_key(self.replica), self._registry,
                self._heartbeat_key(self.replica),
            ]
            if not await self._replant_script(keys=keys, args=args):
                return  # not that generation any more: the next look will tell
            for r in stale:
                r.gen = gen
                r.value = f"{r.value.rsplit('|', 1)[0]}|{gen}"
                self._replanted[r.field] = gen
                committed = self._committed_gen.get(r.field)
                if committed is not None and int(committed) < int(gen):
                    # Its row was committed before the rebuild read the ledger (we learned it
                    # while the replant was on its way): the read counted it, take the replant back.
                    self._releases.append(r)
            log.warning("replanted %d requests in flight across a loss of the quota counters", len(stale))
        self._gen_seen = gen

    # -- state ------------------------------------------------------------------------------

    async def states(
        self, user_id: int, plan: Plan, anchor: float | None = None, *, held: bool = False
    ) -> list[WindowState]:
        await self.flush()
        demand = legacy_demand(plan, 0, anchor if anchor is not None else self.anchor_of(user_id))
        reservation = await self._admit_or_probe(user_id, plan, demand, "", probe=True)
        states = reservation.states
        if held:  # one more round trip, for whoever asks what was settled (alerts)
            reserved = await self._held(user_id, reservation.gen)
            states = [
                replace(state, held=min(state.used, reserved.get(charge.key, 0.0)))
                for state, charge in zip(states, reservation.charges, strict=True)
            ]
        if plan.concurrency is not None:
            running = await self.redis.hlen(f"{self._base(user_id)}:run")
            states.append(WindowState("concurrency", float(running), float(plan.concurrency), None, "concurrency"))
        return states

    async def _held(self, user_id: int, gen: str) -> dict[str, float]:
        """Counter -> how much of it is not (yet) spent: the reservations of this user's
        requests in flight on any replica, and for the ones this replica finished whose rows
        are not committed yet, what their real usage gives back. (Another replica's finished,
        uncommitted requests count at their reservation until it commits them.)"""
        base = self._base(user_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(f"{base}:if")
        pipe.hkeys(f"{base}:run")
        entries, running = cast("tuple[dict[str, str], list[str]]", tuple(await pipe.execute()))
        running_now = set(running)
        held: dict[str, float] = {}
        for field, value in entries.items():
            entry = decode(value)
            pending = self._pending.get(field)
            if entry.gen != gen or (field not in running_now and pending is None):
                continue
            for _kind, key, unit, factor, reserved in entry.charges:
                back = reserved if pending is None else reserved - pending.amounts.of(unit) * factor
                held[key] = held.get(key, 0.0) + back
        return held

    async def start(self, view: LedgerView) -> None:
        """Join: heartbeat, rebuild if Redis has no state, reconcile dead replicas' requests."""
        self.view = view
        try:
            await self.replicas.heartbeat()  # registers this replica too
            if await self.decoded.get(self._gen_key) is None:
                await self.recover()
            await self.replicas.reconcile()
        except self._errors as exc:
            self._unavailable(exc)  # not fatal: the first request that reaches Redis recovers
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flusher(), name="quota-settle"),
            loop.create_task(self.replicas.watch(), name="quota-replicas"),
        ]

    async def recover(self) -> None:
        """Rebuild from the ledger once across replicas, or wait for whoever is doing it."""
        await self.rebuild.recover()

    async def backfill(self, user_id: int, old: Plan | None, new: Plan, anchor: float | None) -> None:
        await self.rebuild.backfill(user_id, old, new, anchor)

    async def reconcile(self) -> int:
        """Settle or release what replicas that died (no heartbeat) left in flight."""
        return await self.replicas.reconcile()

    async def adopt(self, groups: Sequence[tuple[list[dict[str, Any]], str]]) -> None:
        await self.replicas.adopt(groups)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.flush()
            await self.redis.delete(self._heartbeat_key(self.replica))
            if not self._pending:
                await self.redis.srem(self._registry, self.replica)
        except self._errors:
            log.warning("closing the quota counters: Redis unreachable; another replica will reconcile")
        await self.lean.aclose()
        await self.redis.aclose()

