"""``oneplan serve | users | plans | keys | usage | ledger | providers | alerts | insights | statusline``.

Every command takes ``--config`` and ``--data-dir`` (or ``ONEPLAN_CONFIG`` / ``ONEPLAN_HOME``),
so the CLI and a running server share one database. Errors are one line that says how to fix
them, on stderr, with exit status 1.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from oneplan.errors import ConfigError
from oneplan.routing.catalog import Catalog


class Context:
    def __init__(self, config: Path | None, data_dir: Path | None) -> None:
        from oneplan.config import default_config_path, default_data_dir

        self.data_dir = data_dir or default_data_dir()
        self.config_path = config or default_config_path(self.data_dir)
        self._catalog: Catalog | None = None
        self._book: Any = None
        self._db: Any = None

    @property
    def catalog(self) -> Catalog:
        """The catalog file's, with the plans created at run time (the database's) over it."""
        if self._catalog is None:
            from oneplan.routing.catalog import load
            from oneplan.routing.plan_book import PlanBook

            self._catalog = load(self.config_path)
            self._book = PlanBook(self._catalog)
            self._book.apply(self.db().list_plans())
        return self._catalog

    @property
    def book(self) -> Any:
        """Where each plan comes from (``oneplan/routing/plan_book.py``)."""
        self.catalog  # noqa: B018 (loads it)
        return self._book

    def db(self) -> Any:
        from oneplan.store.db import Database

        if self._db is None:
            self._db = Database.open(self.data_dir, self.catalog.server.database_url)
        return self._db

    def instant(self, value: str) -> float:
        """``--subscribed-at``: unix seconds or an ISO 8601 date (in server.quota_timezone)."""
        from oneplan.routing.plan_book import parse_instant

        return parse_instant(value, self.catalog.server.quota_timezone, "--subscribed-at")


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` / ``--data-dir`` on every command; one-line errors."""

    @click.option("--config", "config", type=click.Path(path_type=Path), envvar="ONEPLAN_CONFIG", help="Catalog file (oneplan.toml).")
    @click.option("--data-dir", "data_dir", type=click.Path(path_type=Path), envvar="ONEPLAN_HOME", help="Data directory.")
    @functools.wraps(fn)
    def wrapper(config: Path | None, data_dir: Path | None, **kwargs: Any) -> Any:
        try:
            return fn(Context(config, data_dir), **kwargs)
        except (ConfigError, ValueError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.version_option(package_name="oneplan")
def cli() -> None:
    """oneplan: one key for many model providers."""


@cli.command()
@common
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 4000).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--local-model", "local_models", multiple=True, type=click.Path(path_type=Path), help="Serve an open-weight checkpoint directory.")
@click.option("--log-level", default="info", show_default=True)
def serve(ctx: Context, host: str | None, port: int | None, workers: int, local_models: tuple[Path, ...], log_level: str) -> None:
    """Start the gateway."""
    from oneplan.server.run import serve as run

    run(ctx, host=host, port=port, workers=workers, local_models=list(local_models), log_level=log_level)


@cli.group()
def users() -> None:
    """Developers and their plans."""


@users.command("create")
@common
@click.argument("name")
@click.option("--plan", required=True, help="The plan this user is on.")
@click.option("--subscribed-at", default=None, metavar="WHEN", help="When the subscription began (anniversary windows): unix seconds or an ISO 8601 date; default now.")
def users_create(ctx: Context, name: str, plan: str, subscribed_at: str | None) -> None:
    """Create a user; print their first API key alone on stdout."""
    ctx.catalog.plan(plan)
    when = None if subscribed_at is None else ctx.instant(subscribed_at)
    _user, _key_id, key = ctx.db().create_user(name, plan, when)
    click.echo(key)


@users.command("list")
@common
@click.option("--json", "as_json", is_flag=True)
def users_list(ctx: Context, as_json: bool) -> None:
    """List users."""
    rows = [
        {"name": u.name, "plan": u.plan, "created_at": u.created_at, "subscribed_at": u.subscribed}
        for u in ctx.db().list_users()
    ]
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    for row in rows:
        since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["subscribed_at"]))
        click.echo(f"{row['name']}\t{row['plan']}\tsubscribed {since} UTC")


@users.command("set-plan")
@common
@click.argument("name")
@click.option("--plan", required=True)
def users_set_plan(ctx: Context, name: str, plan: str) -> None:
    """Move a user to another plan."""
    ctx.catalog.plan(plan)
    ctx.db().set_plan(name, plan)
    click.echo(f"{name} is now on plan {plan} (what they used in open windows still counts)", err=True)


@users.command("set-subscribed")
@common
@click.argument("name")
@click.argument("when")
def users_set_subscribed(ctx: Context, name: str, when: str) -> None:
    """When NAME's subscription began: unix seconds, an ISO 8601 date (2026-01-31, in
    server.quota_timezone) or date-time, or `created` for the user's creation time.
    Anniversary windows (a month from the renewal date) count from it."""
    value = None if when == "created" else ctx.instant(when)
    ctx.db().set_subscribed_at(name, value)
    shown = "their creation" if value is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    click.echo(f"{name}'s subscription counts from {shown}", err=True)


@cli.group()
def plans() -> None:
    """Plans: the catalog's, and those created or changed at run time (in the database)."""


def _spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--file", "spec_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), help="The spec from a JSON file (or TOML, as under [plans.NAME]).")(fn)
    return click.option("--spec", default=None, metavar="JSON", help='The whole spec, as [plans.NAME] takes it: \'{"requests_per_5h": 600}\'.')(fn)


@plans.command("list")
@common
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plans_list(ctx: Context, as_json: bool) -> None:
    """Every plan in force: where it comes from, how many users it has, its spec."""
    from oneplan.cli import plans as impl

    impl.show_list(ctx, as_json)


@plans.command("show")
@common
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plans_show(ctx: Context, name: str, as_json: bool) -> None:
    """One plan's spec and source."""
    from oneplan.cli import plans as impl

    impl.show_one(ctx, name, as_json)


@plans.command("create")
@common
@click.argument("name")
@_spec_options
def plans_create(ctx: Context, name: str, spec: str | None, spec_file: Path | None) -> None:
    """Create plan NAME in the database; running servers pick it up within seconds."""
    from oneplan.cli import plans as impl

    impl.create(ctx, name, impl.read_spec(spec, spec_file))


@plans.command("set")
@common
@click.argument("name")
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@_spec_options
def plans_set(ctx: Context, name: str, assignments: tuple[str, ...], spec: str | None, spec_file: Path | None) -> None:
    """Change plan NAME: KEY=VALUE pairs merge into its spec (VALUE is JSON, or a string;
    null removes the key); --spec or --file replaces it. A catalog plan changed here is
    overridden by the database's copy."""
    from oneplan.cli import plans as impl

    impl.set_plan(ctx, name, impl.read_spec(spec, spec_file), assignments)


@plans.command("delete")
@common
@click.argument("name")
def plans_delete(ctx: Context, name: str) -> None:
    """Delete run-time plan NAME (refused while users are on it, unless the catalog has a
    plan of that name, which is then in force again)."""
    from oneplan.cli import plans as impl

    impl.delete(ctx, name)


@cli.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@common
@click.argument("name")
@click.option("--expires-in-days", type=float, default=None, help="Make the key expire.")
def keys_create(ctx: Context, name: str, expires_in_days: float | None) -> None:
    """Another key for user NAME, printed alone on stdout."""
    expires = time.time() + expires_in_days * 86400 if expires_in_days else None
    _key_id, key = ctx.db().create_key(name, expires)
    click.echo(key)


@keys.command("list")
@common
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def keys_list(ctx: Context, name: str | None, as_json: bool) -> None:
    """List keys (ids and prefixes only: keys are stored hashed)."""
    rows = ctx.db().list_keys(name)
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else ("expired" if row["expires_at"] and row["expires_at"] < time.time() else "active")
        click.echo(f"{row['id']}\t{row['user']}\t{row['prefix']}…\t{state}")


@keys.command("revoke")
@common
@click.argument("key_id")
def keys_revoke(ctx: Context, key_id: str) -> None:
    """Revoke a key by its id (see `oneplan keys list`)."""
    if not ctx.db().revoke_key(key_id):
        raise ValueError(f"no active key {key_id!r} (see: oneplan keys list)")
    click.echo(f"revoked {key_id}", err=True)


@cli.command()
@common
@click.option("--user", "user_name", default=None, help="Only this user.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def usage(ctx: Context, user_name: str | None, as_json: bool) -> None:
    """Per-user and per-model totals, and each quota window's state."""
    from oneplan.cli.usage import show_usage

    show_usage(ctx, user_name, as_json)


@cli.group()
def ledger() -> None:
    """The usage ledger's own health."""


@ledger.command("status")
@common
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ledger_status(ctx: Context, as_json: bool) -> None:
    """Rows waiting in journals, and rows the database refused (set aside, never lost)."""
    from oneplan.metering.ledger import dead_file_rows, journal_rows

    segments, waiting = journal_rows(ctx.data_dir / "journal")
    count, recent = ctx.db().dead_rows()
    in_file = dead_file_rows(ctx.data_dir)
    status = {
        "journal_segments": segments, "journal_rows": waiting,
        "set_aside_rows": count, "set_aside_in_file": in_file, "recent_set_aside": recent,
    }
    if as_json:
        click.echo(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"journal: {waiting} rows in {segments} segments waiting for the database")
    click.echo(f"set aside: {count} rows in ledger_dead" + (f", {in_file} in ledger-dead.jsonl" if in_file else ""))
    for row in recent:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["set_aside_at"]))
        click.echo(f"  {when} UTC  {row['id']}  {row['error']}")


@cli.group()
def providers() -> None:
    """Provider deployments, as the running server sees them."""


@providers.command("status")
@click.option("--url", default="http://127.0.0.1:4000", show_default=True, envvar="ONEPLAN_URL", help="The running server.")
@click.option("--admin-key", envvar="ONEPLAN_ADMIN_KEY", required=True, help="The admin key (or ONEPLAN_ADMIN_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def providers_status(url: str, admin_key: str, as_json: bool) -> None:
    """Each deployment's circuit, requests in flight and errors. Circuit state lives in the
    server process, so this asks the server's admin API rather than the database."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url.rstrip("/") + "/admin/providers", headers={"authorization": f"Bearer {admin_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # stdlib: works on the base install
            body = reply.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            _fail("the server refused the admin key: pass --admin-key or set ONEPLAN_ADMIN_KEY")
        _fail(f"{url}/admin/providers answered {exc.code}: {exc.read()[:200].decode(errors='replace')}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(f"no oneplan server answers at {url} ({type(reason).__name__}): start `oneplan serve` or pass --url")
    data = orjson.loads(body)["data"]
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    header = ("PROVIDER", "UPSTREAM", "STATE", "IN FLIGHT", "OK", "FAILED", "RETRIES", "LAST ERROR")
    lines = [header] + [
        (
            d["provider"], d["upstream"],
            d["state"] + (f" ({d['retry_in']:g}s)" if d["retry_in"] else ""),
            str(d["in_flight"]), str(d["successes"]), str(d["failures"]), str(d["retries"]),
            (d["last_error"] or "")[:60],
        )
        for d in data
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])


@cli.group()
def alerts() -> None:
    """Quota alerts and their deliveries."""


@alerts.command("status")
@common
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def alerts_status(ctx: Context, as_json: bool) -> None:
    """Pending and failed alert deliveries (from the database)."""
    from oneplan.cli.alerts import show_status

    show_status(ctx, as_json)


@cli.group()
def insights() -> None:
    """Weekly usage insights."""


@insights.command("preview")
@common
@click.option("--user", "user_name", default=None, help="One user's digest (default: the operator's, everyone).")
@click.option("--week-of", default=None, help="A date in the week to digest (default: the last complete week).")
@click.option("--json", "as_json", is_flag=True, help="The digest's figures and renderings as JSON.")
@click.option("--html", is_flag=True, help="The email's HTML part.")
def insights_preview(ctx: Context, user_name: str | None, week_of: str | None, as_json: bool, html: bool) -> None:
    """Print the weekly digest as it would be sent."""
    from oneplan.cli.alerts import show_preview

    show_preview(ctx, user_name, week_of, as_json, html)


@cli.command()
@click.option("--url", default="http://127.0.0.1:4000", show_default=True, envvar="ONEPLAN_URL", help="The oneplan server.")
@click.option("--key", envvar="ONEPLAN_API_KEY", default=None, help="Your oneplan key (or ONEPLAN_API_KEY).")
def statusline(url: str, key: str | None) -> None:
    """One line for Claude Code's statusLine: your tightest quota window and what is left."""
    from oneplan.cli.statusline import statusline as render

    text, status = render(url, key)
    click.echo(text)
    sys.exit(status)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
