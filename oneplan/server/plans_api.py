"""``/admin/plans``: the plans in force, and plans created, changed and deleted at run time.

A plan's ``spec`` is what ``[plans.NAME]`` takes, as a JSON object, validated by the plan
engine before it is stored (a 400 names the key: ``spec.requests_per_5h``). A run-time plan
overrides the catalog's plan of the same name; deleting it brings the catalog's back. Every
write reaches the other replicas within ``server.plans_refresh_seconds`` (``plan_sync.py``) and
this one at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.errors import Conflict, InvalidRequest, NotFound
from oneplan.protocols.validation import Lenient
from oneplan.routing.plan_book import CATALOG, build_plan, merge_patch
from oneplan.server.admin import PlanName, _json, admin_only, body, payload
from oneplan.store.db import PlanInUse

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway


class PlanPath(Lenient):
    name: PlanName


class NewPlan(Lenient):
    name: PlanName
    spec: dict[str, Any]


class SpecBody(Lenient):
    spec: dict[str, Any]  # PUT: the whole spec; PATCH: a JSON merge patch (null removes a key)


def routes(gateway: Gateway) -> list[Route]:
    db, sync = gateway.db, gateway.plans
    book = sync.book

    def guard(handler: Any) -> Any:
        return admin_only(gateway, handler)

    def check(name: str, spec: dict[str, Any]) -> None:
        build_plan(name, spec, gateway.catalog.server.quota_timezone)  # SpecError: a 400 naming the key

    def path_name(request: Request) -> str:
        return str(payload(PlanPath, request.path_params).name)

    async def entry(name: str, status: int = 200) -> Response:
        users = await asyncio.to_thread(db.plan_users)
        return _json(book.entry(name, users.get(name, 0)), status)

    def missing(name: str) -> NotFound:
        return NotFound(f"No plan named {name!r}: GET /admin/plans lists them.")

    async def list_plans(request: Request) -> Response:
        await sync.sync()
        users = await asyncio.to_thread(db.plan_users)
        return _json({"data": book.entries(users)})

    async def get_plan(request: Request) -> Response:
        name = path_name(request)
        await sync.sync()
        if book.source(name) is None:
            raise missing(name)
        return await entry(name)

    async def create_plan(request: Request) -> Response:
        data = await body(request, NewPlan)
        name = data.name
        await sync.sync()
        source = book.source(name)
        if source is not None:
            raise Conflict(
                f"name: a plan named {name!r} exists ({source}): change it with PUT or PATCH /admin/plans/{name}.",
                param="name",
            )
        check(name, data.spec)
        try:
            await asyncio.to_thread(lambda: db.upsert_plan(name, data.spec, create_only=True))
        except ValueError:  # another replica created it a moment ago
            raise Conflict(f"name: a plan named {name!r} exists: change it with PUT or PATCH.", param="name") from None
        await sync.refresh()
        return await entry(name, 201)

    async def put_plan(request: Request) -> Response:
        name = path_name(request)
        data = await body(request, SpecBody)
        check(name, data.spec)
        await sync.sync()
        existed = book.source(name) is not None
        await asyncio.to_thread(db.upsert_plan, name, data.spec)
        await sync.refresh()
        return await entry(name, 200 if existed else 201)

    async def patch_plan(request: Request) -> Response:
        name = path_name(request)
        data = await body(request, SpecBody)
        await sync.sync()
        if book.source(name) is None:
            raise missing(name)
        current = book.spec(name)
        if current is None:
            raise InvalidRequest(
                f"spec: the catalog's spec of plan {name!r} cannot be read back: send the whole spec with PUT.",
                param="spec",
            )
        spec = merge_patch(current, data.spec)
        check(name, spec)
        await asyncio.to_thread(db.upsert_plan, name, spec)
        await sync.refresh()
        return await entry(name)

    async def delete_plan(request: Request) -> Response:
        """Run-time plans only. With a catalog plan of the same name its users go back to it;
        without one, a plan that users are on is refused (409) until they are moved."""
        name = path_name(request)
        await sync.sync()
        source = book.source(name)
        if source is None:
            raise missing(name)
        if source == CATALOG:
            raise Conflict(
                f"plan {name!r} is declared in {gateway.catalog.source}: remove [plans.{name}] there "
                "(only plans created at run time are deleted here).",
            )
        fallback = name in book.base
        try:
            await asyncio.to_thread(lambda: db.delete_plan(name, users_may_stay=fallback))
        except PlanInUse as exc:
            raise Conflict(str(exc)) from None
        await sync.refresh()
        return _json({"deleted": name, "in_force": CATALOG if fallback else None})

    return [
        Route("/admin/plans", guard(list_plans), methods=["GET"]),
        Route("/admin/plans", guard(create_plan), methods=["POST"]),
        Route("/admin/plans/{name}", guard(get_plan), methods=["GET"]),
        Route("/admin/plans/{name}", guard(put_plan), methods=["PUT"]),
        Route("/admin/plans/{name}", guard(patch_plan), methods=["PATCH"]),
        Route("/admin/plans/{name}", guard(delete_plan), methods=["DELETE"]),
    ]
