"""``oneplan plans list|show|create|set|delete``: plans in the database, beside the catalog's.

Like ``oneplan users``, these work on the database directly; every running replica picks a
change up within ``server.plans_refresh_seconds``. A spec is what ``[plans.NAME]`` takes, as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from oneplan.routing.plan_book import CATALOG, SpecError, build_plan, merge_patch
from oneplan.store.db import PlanInUse


def read_spec(spec: str | None, file: Path | None) -> dict[str, Any] | None:
    """``--spec JSON`` or ``--file PATH`` (JSON, or TOML as under ``[plans.NAME]``)."""
    if spec is not None and file is not None:
        raise ValueError("give --spec or --file, not both")
    if file is not None:
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".toml":
            import tomllib

            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{file}: not valid TOML: {exc}") from None
        spec, where = text, str(file)
    else:
        where = "--spec"
    if spec is None:
        return None
    try:
        data = orjson.loads(spec)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc}): give an object such as '{{\"requests_per_5h\": 600}}'") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: give a JSON object, such as '{{\"requests_per_5h\": 600}}'")
    return data


def assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a merge patch: VALUE is JSON when it parses (``600``, ``["m1"]``,
    ``null`` removes the key), else a string; ``a.b=1`` sets ``b`` inside ``a``."""
    patch: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r}: write KEY=VALUE (requests_per_5h=600, models='[\"qwen*\"]')")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = patch
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{pair!r}: {part} is set to a value already")
        node[leaf] = value
    return patch


def _check(ctx: Any, name: str, spec: dict[str, Any]) -> None:
    try:
        build_plan(name, spec, ctx.catalog.server.quota_timezone)
    except SpecError as exc:
        raise ValueError(f"plan {name!r}: {exc}") from None


def _entries(ctx: Any) -> list[dict[str, Any]]:
    return list(ctx.book.entries(ctx.db().plan_users()))


def _entry(ctx: Any, name: str) -> dict[str, Any]:
    for entry in _entries(ctx):
        if entry["name"] == name:
            return entry
    names = ", ".join(sorted(ctx.catalog.plans)) or "none"
    raise ValueError(f"no plan named {name!r} (plans: {names}; create one: oneplan plans create {name} --spec JSON)")


def _compact(spec: Any) -> str:
    return "-" if spec is None else orjson.dumps(spec).decode()


def show_list(ctx: Any, as_json: bool) -> None:
    entries = _entries(ctx)
    if as_json:
        click.echo(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("plan", "source", "users", "spec"):
        table.add_column(column, justify="right" if column == "users" else "left", overflow="fold")
    for e in entries:
        source = e["source"] + (" (over catalog)" if e["overrides_catalog"] else "")
        table.add_row(e["name"], source, str(e["users"]), _compact(e["spec"]))
    Console(soft_wrap=True).print(table)


def show_one(ctx: Any, name: str, as_json: bool) -> None:
    entry = _entry(ctx, name)
    if as_json:
        click.echo(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())
        return
    source = entry["source"] + (" (overrides the catalog's)" if entry["overrides_catalog"] else "")
    click.echo(f"plan:   {entry['name']}\nsource: {source}\nusers:  {entry['users']}")
    if entry.get("error"):
        click.echo(f"error:  {entry['error']}")
    click.echo("spec:   " + orjson.dumps(entry["spec"], option=orjson.OPT_INDENT_2).decode().replace("\n", "\n        "))


def create(ctx: Any, name: str, spec: dict[str, Any] | None) -> None:
    if spec is None:
        raise ValueError("give the plan's spec: --spec '{\"requests_per_5h\": 600}' or --file plan.json")
    source = ctx.book.source(name)
    if source is not None:
        raise ValueError(f"a plan named {name!r} exists ({source}): change it with: oneplan plans set {name} KEY=VALUE")
    _check(ctx, name, spec)
    ctx.db().upsert_plan(name, spec, create_only=True)
    click.echo(f"created plan {name}", err=True)


def set_plan(ctx: Any, name: str, spec: dict[str, Any] | None, pairs: tuple[str, ...]) -> None:
    """``--spec``/``--file`` replace the spec; KEY=VALUE pairs merge into it (after --spec)."""
    if spec is None and not pairs:
        raise ValueError(f"nothing to set: oneplan plans set {name} requests_per_5h=600 (or --spec JSON)")
    if spec is None:
        if ctx.book.source(name) is None:
            raise ValueError(f"no plan named {name!r} (create it: oneplan plans create {name} --spec JSON)")
        spec = ctx.book.spec(name)
        if spec is None:
            raise ValueError(f"the catalog's spec of plan {name!r} cannot be read back: give the whole spec with --spec")
    spec = merge_patch(spec, assignments(pairs))
    _check(ctx, name, spec)
    ctx.db().upsert_plan(name, spec)
    click.echo(f"plan {name} is now {_compact(spec)}", err=True)


def delete(ctx: Any, name: str) -> None:
    source = ctx.book.source(name)
    if source is None:
        raise ValueError(f"no plan named {name!r} (see: oneplan plans list)")
    if source == CATALOG:
        raise ValueError(f"plan {name!r} is declared in {ctx.catalog.source}: remove [plans.{name}] there")
    fallback = name in ctx.book.base
    try:
        ctx.db().delete_plan(name, users_may_stay=fallback)
    except PlanInUse as exc:
        raise ValueError(str(exc)) from None
    click.echo(f"deleted plan {name}" + (" (the catalog's plan of that name is in force again)" if fallback else ""), err=True)
