"""The plans in force: the catalog file's ``[plans.NAME]`` and the plans created or changed at
run time (the ``plans`` table: admin API, ``oneplan plans``), as one dict.

A run-time plan overrides the catalog's plan of the same name; deleting it brings the
catalog's back. A spec is opaque here: a JSON object validated by the plan engine exactly as
``[plans.NAME]`` is, so a key the engine gains works at run time with no change here.

``PlanBook.apply`` builds a new dict and assigns ``catalog.plans`` once: a request reads the old
plans or the new ones, never a mixture, and never waits for the database (the server's poll,
``oneplan/server/plan_sync.py``, calls it off the request path).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from oneplan.errors import ConfigError
from oneplan.metering.plans import Plan, plan_from_spec
from oneplan.routing.catalog import DEFAULT_PLAN, Catalog
from oneplan.store.db import PlanRow

log = logging.getLogger("oneplan.plans")

CATALOG, RUNTIME = "catalog", "runtime"


class SpecError(ValueError):
    """A spec the plan engine refuses; ``field`` names the key (``spec.requests_per_5h``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def build_plan(name: str, spec: Any, default_timezone: str) -> Plan:
    """``spec`` as a ``Plan``, or a ``SpecError`` naming the field."""
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be a JSON object (the keys [plans.NAME] takes)")
    try:
        return plan_from_spec(name, spec, default_timezone)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = "unknown key (check its spelling)" if error["type"] == "extra_forbidden" else error["msg"]
        raise SpecError(path, message) from None
    except (ConfigError, ValueError, TypeError) as exc:
        raise SpecError("spec", str(exc)) from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, ``null`` removes a key, anything
    else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def catalog_specs(source: str, plans: dict[str, Plan], timezone: str) -> dict[str, dict[str, Any] | None]:
    """Each catalog plan's spec as the operator wrote it (``None`` where it cannot be told)."""
    if set(plans) == {"default"}:
        return {"default": DEFAULT_PLAN.model_dump(mode="json", exclude_unset=True)}
    path = Path(source)
    if path.is_file():
        from oneplan.config import load_file

        try:
            declared = load_file(path).plans
            if set(declared) == set(plans):
                return {name: declared[name].model_dump(mode="json", exclude_unset=True) for name in plans}
        except ConfigError:
            pass  # the file changed on disk since start-up: fall back to what was built
    # A catalog built from a string (tests) or a file edited since: the specs are not known.
    return dict.fromkeys(plans)


class PlanBook:
    """The catalog's plans, and the run-time plans over them."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.base: dict[str, Plan] = dict(catalog.plans)
        self._base_specs: dict[str, dict[str, Any] | None] | None = None
        self.runtime: dict[str, PlanRow] = {}
        self._refused: dict[str, str] = {}  # run-time plans the engine no longer builds: why

    @property
    def base_specs(self) -> dict[str, dict[str, Any] | None]:
        if self._base_specs is None:
            self._base_specs = catalog_specs(self.catalog.source, self.base, self.catalog.server.quota_timezone)
        return self._base_specs

    def apply(self, rows: list[PlanRow]) -> dict[str, Plan]:
        """Build catalog ∪ ``rows`` and put it in force in one assignment. A stored spec the
        engine refuses (written by another version, say) is skipped with a warning, once: the
        plan keeps its last good definition if this process had one."""
        current = self.catalog.plans
        plans = dict(self.base)
        refused: dict[str, str] = {}
        for row in rows:
            try:
                plans[row.name] = build_plan(row.name, row.spec, self.catalog.server.quota_timezone)
            except SpecError as exc:
                refused[row.name] = str(exc)
                if self._refused.get(row.name) != str(exc):
                    log.warning("run-time plan %r is not valid (%s); keeping its last good definition", row.name, exc)
                if row.name in current and (row.name in self.runtime or row.name not in self.base):
                    plans[row.name] = current[row.name]
        self._refused = refused
        self.runtime = {row.name: row for row in rows}
        self.catalog.plans = plans
        return plans

    def source(self, name: str) -> str | None:
        if name in self.runtime:
            return RUNTIME
        return CATALOG if name in self.base else None

    def spec(self, name: str) -> dict[str, Any] | None:
        """The spec in force under ``name`` (the run-time one over the catalog's)."""
        if name in self.runtime:
            return self.runtime[name].spec
        return self.base_specs.get(name)

    def entry(self, name: str, users: int | None = None) -> dict[str, Any] | None:
        source = self.source(name)
        if source is None:
            return None
        row = self.runtime.get(name)
        out: dict[str, Any] = {
            "name": name,
            "source": source,
            "spec": self.spec(name),
            "overrides_catalog": source == RUNTIME and name in self.base,
            "updated_at": row.updated_at if row else None,
        }
        if name in self._refused:
            out["error"] = self._refused[name]
        if users is not None:
            out["users"] = users
        return out

    def entries(self, users: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """Every plan in force, by name; ``users``: how many users each has."""
        out = []
        for name in sorted(set(self.base) | set(self.runtime)):
            entry = self.entry(name, None if users is None else users.get(name, 0))
            if entry is not None:
                out.append(entry)
        return out


# -- subscription times ------------------------------------------------------------------------


def parse_instant(value: Any, timezone: str = "UTC", field: str = "subscribed_at") -> float:
    """Unix seconds from a number, a numeric string, or an ISO 8601 date or date-time (one
    without an offset is in ``timezone``, the operator's ``server.quota_timezone``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(field, "give unix seconds or an ISO 8601 date (2026-01-31 or 2026-01-31T09:00:00+08:00)")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                raise SpecError(
                    field, f"{value!r} is neither unix seconds nor an ISO 8601 date (2026-01-31, 2026-01-31T09:00:00Z)"
                ) from None
            if when.tzinfo is None:
                try:
                    when = when.replace(tzinfo=ZoneInfo(timezone))
                except ZoneInfoNotFoundError:
                    raise SpecError(field, f"server.quota_timezone {timezone!r} is not a known time zone") from None
            value = when.timestamp()
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or seconds > 253402300799:  # up to 9999-12-31
        raise SpecError(field, "must be a time between 1970 and 9999")
    return seconds
