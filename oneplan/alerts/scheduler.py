"""The periodic work, one ``tick()`` every ``tick_seconds`` inside ``oneplan serve`` (no cron).

Every replica checks its own providers' circuits and error rates (they live in its process);
one replica, the leader holding the ``scheduler`` lease row, does what reads the shared ledger:
runaway detection and the weekly digests. Either way the outbox makes each alert one event, so
a lease that changes hands mid-tick repeats nothing. Time comes from the injected clock: tests
call ``tick()`` themselves and move the clock.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from oneplan.alerts import messages
from oneplan.alerts.detect import ROLLING
from oneplan.alerts.digest import last_week_start, weekly
from oneplan.alerts.rules import provider_rules, runaway_rules, user_channel_names
from oneplan.alerts.runaway import error_rate_breaches, hourly, runaways

if TYPE_CHECKING:
    from oneplan.alerts.service import Alerts

LEASE = "scheduler"
ERROR_WINDOW = 300.0


class Scheduler:
    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts
        self._health: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()
        self.leader = False

    async def tick(self) -> bool:
        """One round; whether this process leads."""
        a = self.alerts
        now = a.clock()
        # What every replica fired and re-armed: a replica that died holding a rolling
        # window's "fired" can no longer re-arm it, so the others learn it here.
        a._fired = await a.db(a.outbox.fired)
        await self.providers(now)
        self.leader = await a.db(a.outbox.lead, LEASE, a.owner, now, 3 * a.config.tick_seconds)
        if self.leader:
            await self.runaway(now)
            await self.digests(now)
        return self.leader

    # -- providers (every replica: circuits live in each process) --------------------------------

    async def providers(self, now: float) -> None:
        a = self.alerts
        rules = provider_rules(a.config)
        if not rules:
            return
        snapshot = a.gw.router.health.snapshot()
        totals: dict[str, tuple[int, int]] = {}
        for d in snapshot:
            ok, failed = totals.get(d["provider"], (0, 0))
            totals[d["provider"]] = (ok + d["successes"], failed + d["failures"])
        self._health.append((now, totals))
        while len(self._health) > 1 and self._health[1][0] <= now - ERROR_WINDOW:
            self._health.popleft()
        _, old = self._health[0]
        window = {}
        for provider, (ok, failed) in totals.items():
            ok0, failed0 = old.get(provider, (0, 0)) if old is not totals else (0, 0)
            window[provider] = (ok - ok0 + failed - failed0, failed - failed0)
        breaches = {b["provider"]: b for b in error_rate_breaches(window, 0.0, a.config.provider_min_requests)}
        for rule_id, rate, channels in rules:
            for d in snapshot:
                key = f"{rule_id}|provider|circuit|{d['provider']}/{d['upstream']}"
                if d["state"] == "open":
                    payload = messages.provider_alert("circuit", d["provider"], d["upstream"], {
                        "consecutive_failures": d["consecutive_failures"], "last_error": d["last_error"],
                    }, a.config.console_url, now)
                    await a.fire((key, ROLLING), "provider", None, payload, channels)
                elif d["state"] == "closed" and a._fired.get(key) == ROLLING:
                    await a.rearm([key])
            for provider in window:
                key = f"{rule_id}|provider|errors|{provider}"
                breach = breaches.get(provider)
                if breach is not None and breach["rate"] > rate:
                    payload = messages.provider_alert("errors", provider, None, breach, a.config.console_url, now)
                    await a.fire((key, ROLLING), "provider", None, payload, channels)
                elif (breach is None or breach["rate"] < rate / 2) and a._fired.get(key) == ROLLING:
                    await a.rearm([key])

    # -- runaway usage (leader: reads the shared ledger) ---------------------------------------

    async def runaway(self, now: float) -> None:
        a = self.alerts
        config = a.config
        if not any(r.event == "runaway" for r in config.rules) and not any(
            (u[3] or {}).get("runaway_factor") for u in a._users.values()
        ):
            return
        rows = await a.db(hourly, a.gw.db, now)
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        for user_id in sorted({r[0] for r in rows}):
            found = await a.user(user_id)
            if found is None:
                continue
            name, plan, settings = found
            mine = [r for r in rows if r[0] == user_id]
            for rule in runaway_rules(config, plan, user_id, settings):
                for hit in runaways(mine, rule.factor, config.runaway_min_requests, config.runaway_history_hours):
                    scope = hit.key_id or "user"
                    key = f"{rule.id}|{user_id}|runaway|{scope}|{hit.metric}"
                    payload = messages.runaway_alert(
                        scope, name, hit.key_id, hit.metric, hit.last_hour, hit.median, rule.factor, config.console_url, now,
                    )
                    await a.fire((key, day), "runaway", user_id, payload, rule.channels)

    # -- weekly digests (leader) ---------------------------------------------------------------

    def digest_due(self, now: float) -> float | None:
        """The start of the week to digest, once this week's send time has passed."""
        a = self.alerts
        week_start, _ = a.gw.periods.week(now)
        due = week_start + a.config.digest_weekday * 86400 + a.config.digest_hour * 3600
        return last_week_start(a.gw.periods, now) if now >= due else None

    async def digests(self, now: float) -> None:
        a = self.alerts
        start = self.digest_due(now)
        if start is None:
            return
        period = str(int(start))
        tz = a.gw.catalog.server.quota_timezone
        link = messages.link(a.config.console_url, "usage")
        if a.config.operator_channels and a._fired.get("digest|operator") != period:
            payload = await a.db(_weekly, a.gw.db, start, tz, None, "everyone", None, link)
            await a.fire(("digest|operator", period), "digest", None, payload, tuple(a.config.operator_channels))
        await a.user(0)  # refresh the cache of users and settings
        for user_id, (_, name, plan_name, settings) in sorted(a._users.items()):
            channels = user_channel_names(user_id, settings)
            key = f"digest|user:{user_id}"
            if not (settings or {}).get("digest") or not channels or a._fired.get(key) == period:
                continue
            plan = a.gw.catalog.plans.get(plan_name)
            models = list(plan.models) if plan else None
            payload = await a.db(_weekly, a.gw.db, start, tz, user_id, name, models, link)
            await a.fire((key, period), "digest", user_id, payload, channels)


def _weekly(db: Any, start: float, tz: str, user_id: int | None, who: str, models: list[str] | None, link: str | None) -> dict[str, Any]:
    return weekly(db, start, tz=tz, user_id=user_id, who=who, plan_models=models, link=link)
