"""Everything the console adds to the server, in one list for ``server/app.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from oneplan.console import admin_api, api, pages
from oneplan.console.sessions import SessionStore, SignInLimiter

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway


def routes(gateway: Gateway) -> list[BaseRoute]:
    sessions = SessionStore(gateway.db)
    readers = api.Readers(gateway)
    return [
        *pages.routes(gateway, sessions, SignInLimiter()),
        *api.routes(gateway, sessions, readers),
        *admin_api.routes(gateway, sessions, readers),
    ]
