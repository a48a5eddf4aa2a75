"""The catalog file (``oneplan.toml``) and server settings, as typed values.

Every key the file may hold is declared here; an unknown or ill-typed key is a ``ConfigError``
whose message is one line naming the file, the key and the fix.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oneplan.alerts.config import AlertsConfig
from oneplan.errors import ConfigError
from oneplan.protocols.registry import DIALECTS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutConfig(_Strict):
    connect: float = Field(10.0, gt=0)
    first_token: float = Field(120.0, gt=0)
    idle: float = Field(120.0, gt=0)
    total: float = Field(900.0, gt=0)


class ProviderConfig(BaseModel):
    """``[providers.NAME]``. Keys beyond these reach the provider kind as options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    api_key: str | None = None  # "env:NAME" or a literal
    base_url: str | None = None
    region: str = "default"
    dialect: str | None = None  # a protocol's dialect (protocols.registry.DIALECTS); the preset decides if unset
    timeouts: TimeoutConfig = TimeoutConfig()
    headers: dict[str, str] = {}
    max_connections: int = Field(200, gt=0)

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, value: str | None) -> str | None:
        if value is not None and value not in DIALECTS:
            names = [f'"{name}"' for name in DIALECTS]
            raise ValueError(f"must be {', '.join(names[:-1])} or {names[-1]}")
        return value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DeploymentRef(_Strict):
    provider: str
    weight: float = Field(1.0, gt=0)
    upstream: str | None = None


class CreditsConfig(_Strict):
    """``credits = {input, cached_input, cache_write, output}`` on a model: plan credits per
    token of each class (unset cached_input / cache_write: as input)."""

    input: float = Field(1.0, ge=0, allow_inf_nan=False)
    cached_input: float | None = Field(None, ge=0, allow_inf_nan=False)
    cache_write: float | None = Field(None, ge=0, allow_inf_nan=False)
    output: float = Field(1.0, ge=0, allow_inf_nan=False)


class ModelConfig(BaseModel):
    """``[models."NAME"]``. Keys beyond these reach the provider as ``Target.options``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    provider: str | None = None
    providers: list[str | DeploymentRef] = []
    upstream: str | None = None
    input_price: float = Field(0.0, ge=0)  # per million tokens
    output_price: float = Field(0.0, ge=0)
    cached_input_price: float | None = Field(None, ge=0)
    # Prompt-cache writes per million (default: the input price); one-hour writes (Anthropic's
    # ``ttl: "1h"``; default: the cache write price).
    cache_write_price: float | None = Field(None, ge=0)
    cache_write_1h_price: float | None = Field(None, ge=0)
    weight: int = Field(1, ge=0)  # requests this model costs against request quotas
    fallbacks: list[str] = []
    aliases: list[str] = []
    context_length: int | None = Field(None, gt=0)
    # Requests asking for more output than this are capped to it (Claude Code asks for up to
    # 128k tokens, more than most providers accept).
    max_output_tokens: int | None = Field(None, gt=0)
    credits: CreditsConfig = CreditsConfig()  # plan credits per token (credit windows)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


Unit = Literal["requests", "credits", "tokens", "cost"]


class WindowConfig(_Strict):
    """One quota window: ``{unit, kind, length, limit}`` (see ``oneplan/metering/plans.py``)."""

    unit: Unit
    kind: Literal["rolling", "calendar", "anniversary"] = "rolling"
    length: str
    limit: float = Field(ge=0, allow_inf_nan=False)
    name: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.:-]+$")

    @model_validator(mode="after")
    def _length(self) -> WindowConfig:
        from oneplan.metering.plans import ANNIVERSARY, CALENDAR, rolling_seconds

        if self.kind == "rolling":
            rolling_seconds(self.length)
        elif self.kind == "calendar" and self.length not in CALENDAR:
            raise ValueError(f"a calendar window's length is one of {', '.join(CALENDAR)} - not {self.length!r}")
        elif self.kind == "anniversary" and self.length not in ANNIVERSARY:
            raise ValueError(f"an anniversary window's length is one of {', '.join(ANNIVERSARY)} - not {self.length!r}")
        return self


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class PeakConfig(_Strict):
    """``peak = [{multiplier = 3, days = ["mon", ...], hours = "14-18"}]``: charges multiplied
    in those hours (the plan's time zone unless ``timezone``), for ``models`` (default all)."""

    multiplier: float = Field(gt=0, allow_inf_nan=False)
    days: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    hours: str = "0-24"
    timezone: str | None = None
    models: list[str] = ["*"]

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        from oneplan.metering.plans import hours

        hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _timezone(value)


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"not a time zone name (like 'Asia/Shanghai' or 'UTC'): {value!r}") from None
    return value


class PlanConfig(_Strict):
    requests_per_5h: int | None = Field(None, ge=0)
    requests_per_week: int | None = Field(None, ge=0)
    requests_per_month: int | None = Field(None, ge=0)
    tokens_per_month: int | None = Field(None, ge=0)
    cost_per_month: float | None = Field(None, ge=0, allow_inf_nan=False)
    models: list[str] = ["*"]
    windows: list[WindowConfig] = []
    concurrency: int | None = Field(None, gt=0)  # requests in flight per user
    requests_per_minute: int | None = Field(None, ge=0)  # calls, whatever the model's weight
    peak: list[PeakConfig] = []
    peak_units: list[Unit] = ["requests", "credits"]  # what peak multipliers multiply
    off_peak_multiplier: float = Field(1.0, gt=0, allow_inf_nan=False)  # when no peak rule applies
    timezone: str | None = None  # calendar windows; default: server.quota_timezone
    on_exceed: Literal["shorten", "refuse"] = "shorten"  # a worst case that does not fit
    min_output_tokens: int = Field(1, ge=1)  # shortening below this refuses instead

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _timezone(value)

    @model_validator(mode="after")
    def _names(self) -> PlanConfig:
        from oneplan.metering.plans import default_name

        shorthands = (
            ("5h", self.requests_per_5h), ("week", self.requests_per_week), ("month", self.requests_per_month),
            ("tokens_month", self.tokens_per_month), ("cost_month", self.cost_per_month),
            ("rpm", self.requests_per_minute),
        )
        seen = {name for name, value in shorthands if value is not None}
        for w in self.windows:
            name = w.name or default_name(w.unit, w.kind, w.length)
            if name in seen:
                raise ValueError(f"two windows are named {name!r}: give one a distinct name")
            seen.add(name)
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, gt=0, lt=65536)
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    store_prompts: bool = False  # keep prompt and completion text in the ledger
    # "env:NAME": the key ring sealing Responses encrypted_content (oneplan/sealing.py);
    # unset, a ring kept in the database and shared by its replicas.
    reasoning_keys: str | None = None
    database_url: str | None = None  # default: sqlite in the data directory
    redis_url: str | None = None  # shared quota counters for several replicas / workers
    redis_prefix: str = Field("oneplan", min_length=1, max_length=100)  # one Redis, several oneplans
    replica_heartbeat_seconds: float = Field(10.0, gt=0)  # a replica silent this long is reconciled
    plans_refresh_seconds: float = Field(2.0, gt=0)  # run-time plan and user-plan changes reach every replica within this
    quota_timezone: str = "UTC"  # where weeks (Monday 00:00) and months (1st, 00:00) begin
    ledger_flush_seconds: float = Field(0.2, gt=0)
    responses_retention_days: float = Field(30, ge=0)
    shutdown_grace_seconds: float = Field(30, ge=0)
    max_header_bytes: int = Field(64 * 1024, ge=1024)  # request line + headers; over it: 431
    header_timeout_seconds: float = Field(10.0, gt=0)  # a request head must arrive within this
    # Idle keep-alive connections are closed after this. Longer than clients' own idle expiry
    # (httpx and so the openai and anthropic SDKs: 5 s, undici 4 s, aiohttp 15 s): the client
    # must drop an idle connection before the server does, or a request it sends just as the
    # server closes meets a reset.
    keep_alive_seconds: float = Field(75.0, gt=0)


class RoutingConfig(_Strict):
    """``[routing]``: how requests find a deployment that answers (``oneplan/routing/``)."""

    strategy: str = "weighted"  # "weighted" (by deployment weight) | "least-busy"
    retries: int = Field(2, ge=0)  # extra tries of the last deployment left, before the first byte
    backoff_seconds: float = Field(0.5, ge=0)  # first back-off; doubles per retry, jittered
    backoff_max_seconds: float = Field(8.0, ge=0)
    deadline_seconds: float = Field(60.0, gt=0)  # no new attempt or back-off past this
    circuit_failures: int = Field(5, ge=1)  # consecutive failures that open a deployment's circuit
    circuit_cooldown_seconds: float = Field(30.0, gt=0)  # open this long before a probe

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value not in ("weighted", "least-busy"):
            raise ValueError('must be "weighted" or "least-busy"')
        return value


class CatalogFile(_Strict):
    server: ServerConfig = ServerConfig()
    routing: RoutingConfig = RoutingConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    plans: dict[str, PlanConfig] = {}
    aliases: dict[str, str] = {}  # glob pattern -> model, e.g. "claude-sonnet-*" = "qwen3.5-plus"
    alerts: AlertsConfig = AlertsConfig()  # oneplan/alerts/config.py


def _error_line(path: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        fix = "remove it or check its spelling"
    elif err["type"] == "missing":
        fix = "add it"
    else:
        fix = "give it a valid value"
    return f"{path}: {key}: {err['msg']} ({fix})"


def load_file(path: str | Path) -> CatalogFile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create it, or drop --config to use the environment)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc} (fix the syntax)") from None
    try:
        return CatalogFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_error_line(str(path), exc)) from None


def resolve_secret(value: str | None, where: str) -> str | None:
    """``env:NAME`` reads the environment; anything else is the secret itself."""
    if value is None or not value.startswith("env:"):
        return value
    name = value[4:]
    secret = os.environ.get(name)
    if not secret:
        raise ConfigError(f"{where}: environment variable {name} is not set (export {name}=...)")
    return secret


def default_config_path(data_dir: Path) -> Path | None:
    """``ONEPLAN_CONFIG``, else ``oneplan.toml`` in the data dir, else in the working dir."""
    env = os.environ.get("ONEPLAN_CONFIG")
    if env:
        return Path(env)
    for candidate in (data_dir / "oneplan.toml", Path("oneplan.toml")):
        if candidate.is_file():
            return candidate
    return None


def default_data_dir() -> Path:
    env = os.environ.get("ONEPLAN_HOME")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "oneplan"
