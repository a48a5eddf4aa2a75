"""``oneplan serve``: check the catalog, prepare the data directory, then run uvicorn."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from oneplan.routing.catalog import Catalog, load

if TYPE_CHECKING:
    from oneplan.server.app import FastFront

_ENV_LOCAL = "ONEPLAN_LOCAL_MODELS"


def first_start_banner(admin_key: str, catalog: Catalog, base: str) -> str:
    plans = ", ".join(sorted(catalog.plans))
    lines = [
        "oneplan is set up. This is the admin key; it is shown only this once, so store it now:",
        "",
        f"    {admin_key}",
        "",
        "Next steps:",
    ]
    if not catalog.providers:
        lines += [
            "  1. Add a provider: export DASHSCOPE_API_KEY (or ZAI_API_KEY, MOONSHOT_API_KEY,",
            "     MINIMAX_API_KEY) and restart, or declare [providers.NAME] in oneplan.toml.",
        ]
    else:
        lines += [f"  1. Providers: {', '.join(sorted(catalog.providers))}; models: {', '.join(catalog.models)}."]
    lines += [
        f"  2. Create a user and hand them the key it prints:  oneplan users create alice --plan {plans.split(', ')[0]}",
        f"     (plans: {plans})",
        f"  3. Point any OpenAI-compatible tool at {base}/v1 with that key.",
    ]
    return "\n".join(lines)


def check_providers(catalog: Catalog) -> None:
    from oneplan.providers.build import build_providers
    from oneplan.routing.router import Router

    providers = build_providers(catalog)
    router = Router(catalog, providers)
    for entry in catalog.models.values():
        for deployment in entry.deployments:
            providers[deployment.provider].check(router.target(entry, deployment))


def build_app(data_dir: Path, config: Path | None, local_models: list[Path]) -> FastFront:
    from oneplan.server import front
    from oneplan.server.app import create_app
    from oneplan.server.gateway import Gateway

    catalog = load(config, local_models)
    front.configure(catalog.server.max_header_bytes, catalog.server.header_timeout_seconds)
    return create_app(Gateway(catalog, data_dir, settle_heap=True))


def worker_app() -> FastFront:
    """The app factory each uvicorn worker process calls (``--workers N``)."""
    config = os.environ.get("ONEPLAN_CONFIG")
    local = [Path(p) for p in os.environ.get(_ENV_LOCAL, "").split(os.pathsep) if p]
    return build_app(Path(os.environ["ONEPLAN_HOME"]), Path(config) if config else None, local)


def serve(ctx: Any, *, host: str | None, port: int | None, workers: int, local_models: list[Path], log_level: str) -> None:
    import uvicorn

    from oneplan.server import front
    from oneplan.store.db import Database

    catalog = load(ctx.config_path, local_models)
    check_providers(catalog)  # fail now, in one line, on a bad provider, secret or checkpoint
    if workers > 1 and not catalog.server.redis_url:
        from oneplan.errors import ConfigError

        raise ConfigError(
            f"{catalog.source}: server.redis_url: --workers {workers} needs shared quota counters "
            '(set [server] redis_url = "redis://127.0.0.1:6379/0")'
        )
    host = host or catalog.server.host
    port = port or catalog.server.port
    data_dir = ctx.data_dir
    db = Database.open(data_dir, catalog.server.database_url)
    admin_key = db.ensure_admin_key()
    db.close()
    from oneplan.server.banner import summary

    click.echo(summary(catalog, ctx.config_path))
    if admin_key:
        click.echo(first_start_banner(admin_key, catalog, f"http://{host}:{port}"))
    sys.stdout.flush()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "loop": "uvloop",
        "timeout_graceful_shutdown": int(catalog.server.shutdown_grace_seconds) or None,
        "server_header": False,
        "proxy_headers": False,  # oneplan logs no client addresses; skip the rewrite per request
        **front.uvicorn_options(catalog.server),  # head size and time limits, keep-alive
    }
    from oneplan.server import shutdown

    shutdown.install()  # SIGTERM: graceful (uvicorn), then exit status 0
    if workers > 1:
        os.environ["ONEPLAN_HOME"] = str(data_dir.resolve())
        if ctx.config_path is not None:
            os.environ["ONEPLAN_CONFIG"] = str(Path(ctx.config_path).resolve())
        os.environ[_ENV_LOCAL] = os.pathsep.join(str(p.resolve()) for p in local_models)
        uvicorn.run("oneplan.server.run:worker_app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(build_app(data_dir, ctx.config_path, local_models), **options)
