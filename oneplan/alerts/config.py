"""``[alerts]`` in the catalog: rules, per-plan defaults, channels and delivery settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENTS = ("quota", "forecast", "runaway", "provider")
CHANNEL_KINDS = ("webhook", "slack", "feishu", "dingtalk", "wecom", "email", "sms")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _percentages(value: list[float]) -> list[float]:
    for v in value:
        if not 0 < v <= 1000:
            raise ValueError("thresholds are percentages of the limit, between 0 and 1000")
    return sorted(set(value))


class ChannelConfig(BaseModel):
    """``[alerts.channels.NAME]``: a ``kind`` and that kind's options (``channels/<kind>.py``
    declares and checks them). Secrets may be ``env:NAME``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in CHANNEL_KINDS:
            raise ValueError(f"must be one of {', '.join(CHANNEL_KINDS)}")
        return value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PlanAlerts(_Strict):
    """``[alerts.plans.NAME]``: the defaults every user on the plan gets."""

    thresholds: list[float] | None = None  # None: [alerts] thresholds
    forecast_minutes: float | None = Field(None, ge=0)
    channels: list[str] = []  # operator channels that receive this plan's users' alerts

    _t = field_validator("thresholds")(lambda cls, v: None if v is None else _percentages(v))


class RuleConfig(_Strict):
    """``[[alerts.rules]]``: a team-wide rule of the operator's."""

    name: str
    event: str  # quota | forecast | runaway | provider
    channels: list[str]
    plans: list[str] = ["*"]  # quota, forecast, runaway: users on these plans
    thresholds: list[float] = [80, 100]  # quota
    minutes: float = Field(30, gt=0)  # forecast: warn when the window runs out within this
    factor: float = Field(5, gt=1)  # runaway: last hour above this many times the median
    error_rate: float = Field(0.5, gt=0, le=1)  # provider: failed share over 5 minutes

    _t = field_validator("thresholds")(lambda cls, v: _percentages(v))

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if value not in EVENTS:
            raise ValueError(f"must be one of {', '.join(EVENTS)}")
        return value


class AlertsConfig(_Strict):
    console_url: str | None = None  # alerts link to its pages, e.g. https://ai.example.com/console
    thresholds: list[float] = [80, 100]  # default per plan window, in % of the limit
    forecast_minutes: float = Field(30, ge=0)  # default forecast warning; 0 = off
    rearm_percent: float = Field(10, ge=0, le=100)  # a rolling window re-arms this far below
    channels: dict[str, ChannelConfig] = {}
    plans: dict[str, PlanAlerts] = {}
    rules: list[RuleConfig] = []
    operator_channels: list[str] = []  # the operator's digest and provider alerts
    user_channel_kinds: list[str] = ["webhook", "slack", "feishu", "dingtalk", "wecom", "email"]
    # Runaway detection, for rules with event = "runaway".
    runaway_min_requests: int = Field(20, ge=1)  # last hour below this is never a runaway
    runaway_history_hours: int = Field(6, ge=1)  # active hours of history needed for a median
    provider_min_requests: int = Field(10, ge=1)
    # Delivery.
    max_attempts: int = Field(10, ge=1)
    retry_base_seconds: float = Field(2.0, gt=0)  # doubles per attempt, up to retry_max_seconds
    retry_max_seconds: float = Field(900.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)  # one delivery attempt
    lease_seconds: float = Field(60.0, gt=0)  # a claimed delivery is another replica's after this
    poll_seconds: float = Field(1.0, gt=0)  # how often due deliveries are looked for
    tick_seconds: float = Field(30.0, gt=0)  # the scheduler's period
    # Weekly digest, in server.quota_timezone.
    digest_weekday: int = Field(0, ge=0, le=6)  # 0 = Monday
    digest_hour: int = Field(9, ge=0, le=23)

    _t = field_validator("thresholds")(lambda cls, v: _percentages(v))

    @field_validator("user_channel_kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        for kind in value:
            if kind not in CHANNEL_KINDS:
                raise ValueError(f"{kind!r} is not a channel kind ({', '.join(CHANNEL_KINDS)})")
        return value

    def check(self, source: str, plans: set[str]) -> None:
        """Names that must exist: channels named by plans, rules and the operator."""
        from oneplan.errors import ConfigError

        named = [("alerts.operator_channels", c) for c in self.operator_channels]
        named += [(f"alerts.plans.{p}.channels", c) for p, cfg in self.plans.items() for c in cfg.channels]
        named += [(f"alerts.rules.{r.name}.channels", c) for r in self.rules for c in r.channels]
        for where, name in named:
            if name not in self.channels:
                raise ConfigError(f"{source}: {where}: no channel named {name!r} (add [alerts.channels.{name}])")
        for name in self.plans:
            if name not in plans:
                raise ConfigError(f"{source}: alerts.plans.{name}: no plan named {name!r} (add [plans.{name}])")
