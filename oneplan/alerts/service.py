"""What one gateway process runs for alerts: ``observe(row)`` after every request (a set
insert: alerting never slows or fails a model request), an evaluator that reads the windows
of the users who just had traffic, a deliverer that claims due deliveries, and the scheduler.

Everything that touches the database runs on one thread of its own, and channel I/O on the
channels' threads, so neither takes a thread the request path needs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from oneplan.alerts import channels, messages, subscriptions
from oneplan.alerts.detect import ROLLING, Crossing, Pace, crossings
from oneplan.alerts.outbox import Delivery, Outbox
from oneplan.alerts.rules import window_rules
from oneplan.alerts.scheduler import Scheduler
from oneplan.errors import DeliveryFailed
from oneplan.metering.rows import LedgerRow

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway

log = logging.getLogger("oneplan.alerts")
_T = TypeVar("_T")
SETTINGS_SECONDS = 30.0  # how long a user's settings and plan are cached


class Alerts:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.config = gateway.catalog.alerts
        self.clock = gateway.clock
        self.outbox = Outbox(gateway.db)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.channels = {
            name: channels.build(name, c.kind, c.options, f"{gateway.catalog.source}: alerts.channels.{name}")
            for name, c in self.config.channels.items()
        }
        self.pace = Pace()
        self.scheduler = Scheduler(self)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oneplan-alerts-db")
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._deliver_wake = asyncio.Event()
        self._fired: dict[str, str] = {}  # state key -> period, known fired (and not re-armed)
        self._users: dict[int, tuple[float, str, str, dict[str, Any] | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[str] = set()

    # -- the hook ----------------------------------------------------------------------------

    def observe(self, row: LedgerRow) -> None:
        """A request finished (its ledger row is journaled): look at its user's windows soon."""
        if row.get("status") != "failed":
            self._dirty.add(row["user_id"])
            self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._fired.update(await self.db(self.outbox.fired))
        for name, loop in (("evaluate", self._evaluate_loop), ("deliver", self._deliver_loop), ("schedule", self._schedule_loop)):
            self._tasks.append(asyncio.create_task(loop(), name=f"alerts-{name}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._db.shutdown(wait=True)

    async def db(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _evaluate_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.evaluate()
            except Exception:
                log.exception("alert evaluation failed; it runs again on the next request")
                await asyncio.sleep(1.0)

    async def _deliver_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._deliver_wake.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass
            self._deliver_wake.clear()
            try:
                await self.deliver()
            except Exception:
                log.exception("alert delivery round failed; retrying")

    async def _schedule_loop(self) -> None:
        while True:
            try:
                await self.scheduler.tick()
            except Exception:
                log.exception("alert scheduler tick failed")
            await asyncio.sleep(self.config.tick_seconds)

    # -- users ---------------------------------------------------------------------------------

    async def user(self, user_id: int) -> tuple[str, str, dict[str, Any] | None] | None:
        """(name, plan, settings), cached for a while."""
        now = self.clock()
        cached = self._users.get(user_id)
        if cached is None or now - cached[0] > SETTINGS_SECONDS:
            users = {u.id: u for u in await self.db(self.gw.db.list_users)}
            settings = await self.db(subscriptions.load, self.gw.db)
            for uid, u in users.items():
                self._users[uid] = (now, u.name, u.plan, settings.get(uid))
            cached = self._users.get(user_id)
            if cached is None:
                return None
        return cached[1], cached[2], cached[3]

    def forget(self, user_id: int) -> None:
        """The user changed their settings: read them again."""
        self._users.pop(user_id, None)

    # -- evaluation ----------------------------------------------------------------------------

    async def evaluate(self) -> None:
        users, self._dirty = self._dirty, set()
        for user_id in users:
            await self.evaluate_user(user_id)

    async def evaluate_user(self, user_id: int) -> None:
        found = await self.user(user_id)
        if found is None:
            return
        name, plan_name, settings = found
        plan = self.gw.catalog.plans.get(plan_name)
        if plan is None:
            return
        rules = window_rules(self.config, plan_name, user_id, settings)
        if not rules:
            return
        now = self.clock()
        # Alerts speak of what was spent: a request in flight holds its worst case, which may
        # mostly come back at settlement.
        states = [
            replace(s, used=s.settled, held=0.0)
            for s in await self.gw.counters.states(user_id, plan, held=True)
        ]
        left = {s.window: self.pace.add(user_id, s, now) for s in states}
        by_window = {s.window: s for s in states}
        for rule in rules:
            fired, rearm = crossings(
                rule.id, rule.thresholds, rule.forecast_minutes, user_id, states, left,
                self.gw.periods, now, self.config.rearm_percent,
            )
            for crossing in fired:
                payload = messages.window_alert(crossing, by_window[crossing.window], name, plan_name, self.config.console_url, now)
                await self.fire(crossing, "quota" if crossing.kind == "threshold" else "forecast", user_id, payload, rule.channels)
            await self.rearm([k for k in rearm if self._fired.get(k) == ROLLING])

    async def fire(
        self, crossing: Crossing | tuple[str, str], kind: str, user_id: int | None, payload: dict[str, Any],
        channel_names: tuple[str, ...],
    ) -> str | None:
        key, period = (crossing.key, crossing.period) if isinstance(crossing, Crossing) else crossing
        if self._fired.get(key) == period:
            return None  # known fired: no database round trip
        event = await self.db(self.outbox.fire, key, period, kind, user_id, payload, channel_names, self.clock())
        self._fired[key] = period
        if event is not None:
            log.info("alert %s fired (%s)", event, kind)
            self._deliver_wake.set()
        return event

    async def rearm(self, keys: list[str]) -> None:
        if keys:
            await self.db(self.outbox.rearm, keys)
            for key in keys:
                self._fired.pop(key, None)

    # -- delivery ------------------------------------------------------------------------------

    async def deliver(self) -> int:
        """Claim what is due and send it, each delivery in its own task; the number claimed."""
        claimed = await self.db(self.outbox.claim, self.owner, self.clock(), self.config.lease_seconds)
        for delivery in claimed:
            if delivery.id not in self._sending:
                self._sending.add(delivery.id)
                self._tasks.append(asyncio.create_task(self._send(delivery)))
        self._tasks = [t for t in self._tasks if not t.done()]
        return len(claimed)

    async def channel(self, name: str) -> channels.Channel:
        if name in self.channels:
            return self.channels[name]
        if name.startswith("user:"):
            _, uid, index = name.split(":")
            found = await self.user(int(uid))
            specs = (found[2] or {}).get("channels", []) if found else []
            if int(index) < len(specs):
                return subscriptions.user_channel(self.config, specs[int(index)], name)
        raise DeliveryFailed(f"no channel {name!r} any more (removed from the catalog or the user's settings)")

    async def _send(self, delivery: Delivery) -> None:
        config = self.config
        try:
            channel = await self.channel(delivery.channel)
            message = channels.Message(delivery.id, delivery.payload, config.timeout_seconds)
            await asyncio.wait_for(channel.send(message), config.timeout_seconds + 5)
        except Exception as exc:  # a channel's failure is a retry, whatever it is
            error = str(exc) if isinstance(exc, DeliveryFailed) else f"{type(exc).__name__}: {exc}"
            last = delivery.attempts >= config.max_attempts
            wait = min(config.retry_max_seconds, config.retry_base_seconds * 2 ** (delivery.attempts - 1))
            wait *= 1 + 0.1 * secrets.randbelow(100) / 100  # jitter: replicas do not retry in step
            log.warning("alert delivery %s to %s failed (attempt %d): %s", delivery.id, delivery.channel, delivery.attempts, error)
            await self.db(self.outbox.retry, delivery.id, self.owner, error, None if last else self.clock() + wait)
        else:
            await self.db(self.outbox.sent, delivery.id, self.clock())
        finally:
            self._sending.discard(delivery.id)
