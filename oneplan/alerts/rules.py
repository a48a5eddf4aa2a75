"""Which rules apply to a user: the plan's defaults (operator channels), team-wide rules, and
the user's own (their channels, set through ``PUT /v1/alerts``)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from oneplan.alerts.config import AlertsConfig


@dataclass(frozen=True, slots=True)
class WindowRule:
    """Threshold and forecast alerts on a plan's windows."""

    id: str  # "plan:NAME" | "team:NAME" | "user:ID": part of every crossing's key
    thresholds: tuple[float, ...]  # percent of the limit
    forecast_minutes: float  # 0: no forecast alert
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunawayRule:
    id: str
    factor: float
    channels: tuple[str, ...]


def user_channel_names(user_id: int, settings: dict[str, Any] | None) -> tuple[str, ...]:
    """A user's own channels are named ``user:ID:N`` in deliveries (resolved when sent)."""
    channels = (settings or {}).get("channels") or []
    return tuple(f"user:{user_id}:{i}" for i in range(len(channels)))


def _on(plan: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(plan, p) for p in patterns)


def window_rules(config: AlertsConfig, plan: str, user_id: int, settings: dict[str, Any] | None) -> list[WindowRule]:
    defaults = config.plans.get(plan)
    thresholds = tuple(defaults.thresholds if defaults and defaults.thresholds is not None else config.thresholds)
    forecast = defaults.forecast_minutes if defaults and defaults.forecast_minutes is not None else config.forecast_minutes
    rules = []
    if defaults and defaults.channels:
        rules.append(WindowRule(f"plan:{plan}", thresholds, forecast, tuple(defaults.channels)))
    for rule in config.rules:
        if rule.event == "quota" and _on(plan, rule.plans):
            rules.append(WindowRule(f"team:{rule.name}", tuple(rule.thresholds), 0, tuple(rule.channels)))
        elif rule.event == "forecast" and _on(plan, rule.plans):
            rules.append(WindowRule(f"team:{rule.name}", (), rule.minutes, tuple(rule.channels)))
    own = user_channel_names(user_id, settings)
    if own:
        s = settings or {}
        mine = s.get("thresholds")
        rules.append(
            WindowRule(
                f"user:{user_id}",
                tuple(sorted(mine)) if mine is not None else thresholds,
                float(s["forecast_minutes"]) if s.get("forecast_minutes") is not None else forecast,
                own,
            )
        )
    return rules


def runaway_rules(config: AlertsConfig, plan: str, user_id: int, settings: dict[str, Any] | None) -> list[RunawayRule]:
    rules = [
        RunawayRule(f"team:{r.name}", r.factor, tuple(r.channels))
        for r in config.rules
        if r.event == "runaway" and _on(plan, r.plans)
    ]
    own = user_channel_names(user_id, settings)
    factor = (settings or {}).get("runaway_factor")
    if own and factor:
        rules.append(RunawayRule(f"user:{user_id}", float(factor), own))
    return rules


def provider_rules(config: AlertsConfig) -> list[tuple[str, float, tuple[str, ...]]]:
    """(rule id, error rate, channels) of the operator's provider rules."""
    return [(f"team:{r.name}", r.error_rate, tuple(r.channels)) for r in config.rules if r.event == "provider"]
