"""A developer's own alert settings, set with their key through ``PUT /v1/alerts``: their
thresholds, forecast and runaway warnings, their channels, and whether they get the weekly
digest. Stored as JSON per user; secrets in them are never shown back."""

from __future__ import annotations

import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import insert, select, update

from oneplan.alerts import channels
from oneplan.alerts.config import AlertsConfig, _percentages
from oneplan.store import schema
from oneplan.store.db import Database

MAX_CHANNELS = 5
HIDDEN = "********"


class UserSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thresholds: list[float] | None = None  # None: the plan's
    forecast_minutes: float | None = Field(None, ge=0)
    runaway_factor: float | None = Field(None, gt=1)
    digest: bool = False
    channels: list[dict[str, Any]] = Field([], max_length=MAX_CHANNELS)

    _t = field_validator("thresholds")(lambda cls, v: None if v is None else _percentages(v))


def email_defaults(config: AlertsConfig) -> dict[str, Any] | None:
    """A user's email channel names only recipients; the server is the operator's."""
    for channel in config.channels.values():
        if channel.kind == "email":
            return channel.options
    return None


def user_channel(config: AlertsConfig, spec: dict[str, Any], where: str) -> channels.Channel:
    """Build (and so check) one of a user's channels. Raises ``ValueError`` with the fix."""
    kind = spec.get("kind")
    if kind not in config.user_channel_kinds:
        raise ValueError(f"{where}.kind: use one of {', '.join(config.user_channel_kinds)}")
    options = {k: v for k, v in spec.items() if k != "kind"}
    if kind == "email":
        server = email_defaults(config)
        if server is None:
            raise ValueError(f"{where}: this server sends no email (the operator has no email channel)")
        options = {**server, "to": options.get("to")}
    return channels.build(where, kind, options, where, trusted=kind == "email")


def validate(config: AlertsConfig, data: Any) -> dict[str, Any]:
    try:
        settings = UserSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}") from None
    for i, spec in enumerate(settings.channels):
        user_channel(config, spec, f"channels.{i}")
    return settings.model_dump()


def redact(settings: dict[str, Any]) -> dict[str, Any]:
    out = dict(settings)
    out["channels"] = [
        {k: (HIDDEN if k in ("secret", "url", "password") and k != "kind" and v else v) for k, v in c.items()}
        for c in settings.get("channels", [])
    ]
    return out


def load(db: Database, user_id: int | None = None) -> dict[int, dict[str, Any]]:
    t = schema.alert_settings
    query = select(t.c.user_id, t.c.config)
    if user_id is not None:
        query = query.where(t.c.user_id == user_id)
    with db.engine.connect() as conn:
        return {uid: orjson.loads(cfg) for uid, cfg in conn.execute(query)}


def save(db: Database, user_id: int, settings: dict[str, Any]) -> None:
    t = schema.alert_settings
    body = orjson.dumps(settings).decode()
    with db.engine.begin() as conn:
        if not conn.execute(update(t).where(t.c.user_id == user_id).values(config=body, updated_at=time.time())).rowcount:
            conn.execute(insert(t).values(user_id=user_id, config=body, updated_at=time.time()))
