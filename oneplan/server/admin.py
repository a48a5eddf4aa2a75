"""The admin API (``/admin/...``, admin key only), usage for callers, and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
from pydantic import Field, StringConstraints, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oneplan.console.access import admin_refusal
from oneplan.errors import BackendUnavailable, InvalidRequest, NotFound, OneplanError
from oneplan.metering.report import usage_report as build_report
from oneplan.protocols import openai_chat
from oneplan.protocols.validation import Lenient, check_shape, invalid
from oneplan.routing.plan_book import SpecError, parse_instant
from oneplan.server.auth import bearer
from oneplan.server.errors import error_response
from oneplan.server.pipeline import read_json

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway

OPENAI = openai_chat.PROTOCOL
Endpoint = Callable[[Request], Awaitable[Response]]
_Model = TypeVar("_Model", bound=Lenient)
MAX_ADMIN_BODY = 64 * 1024  # a user, a key: a few hundred bytes

# Names as the database holds them (users.name is 200 characters): printable, never empty.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
UserName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]
PlanName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_PRINTABLE)]
KeyId = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=_PRINTABLE)]


# Unix seconds, or an ISO 8601 date or date-time (without an offset: server.quota_timezone);
# checked by parse_instant, whose errors name the field.
Instant = Any


class NewUser(Lenient):
    name: UserName
    plan: PlanName
    subscribed_at: Instant | None = None  # default: now


class UserPath(Lenient):
    name: UserName


class UserChange(Lenient):
    plan: PlanName | None = None
    subscribed_at: Instant | None = None  # null: back to the user's creation time
    disabled: bool | None = None


class NewKey(Lenient):
    user: UserName
    expires_at: Annotated[float, Field(allow_inf_nan=False)] | None = None


class Selection(Lenient):
    """Query parameters naming a user (``?user=``) or a key (the path)."""

    user: UserName | None = None
    key_id: KeyId | None = None


def payload(model: type[_Model], data: Any) -> _Model:
    """``data`` as ``model``, or an ``InvalidRequest`` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc.errors(include_url=False, include_input=False)[0], "brackets") from None


async def usage_report(gateway: Gateway, user_name: str | None) -> dict[str, Any]:
    """From the ledger. A database that cannot answer is a 503 that heals, never a 500."""
    try:
        await gateway.ledger.flush()
        return await asyncio.to_thread(
            build_report, gateway.db, gateway.catalog, gateway.periods, gateway.clock, user_name
        )
    except SQLAlchemyError as exc:
        raise BackendUnavailable(
            f"The usage database cannot answer right now ({type(exc).__name__}); try again shortly."
        ) from None


async def readiness(gateway: Gateway) -> list[str]:
    problems = []
    if not gateway.ready:
        problems.append("starting or stopping")
    try:
        await asyncio.to_thread(gateway.db.get_meta, "admin_key_hash")
    except Exception as exc:
        problems.append(f"database unreachable: {type(exc).__name__}")
    if not gateway.catalog.models:
        problems.append("the catalog has no models")
    return problems


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def admin_only(gateway: Gateway, handler: Endpoint) -> Endpoint:
    """``handler(request)`` for the admin key (or an operator's console session) only; every
    error in the OpenAI error shape."""

    async def endpoint(request: Request) -> Response:
        if not gateway.keys.is_admin(bearer(request.headers)):
            refused = await admin_refusal(gateway, request)  # or an operator's console session
            if refused is not None:
                return error_response(OPENAI, refused)
        try:
            return await handler(request)
        except OneplanError as exc:
            return error_response(OPENAI, exc)
        except SpecError as exc:
            return error_response(OPENAI, InvalidRequest(str(exc), param=exc.field))
        except ValueError as exc:
            return error_response(OPENAI, InvalidRequest(str(exc)))
        except SQLAlchemyError as exc:  # the database went away mid-call: it heals, never a 500
            return error_response(OPENAI, BackendUnavailable(
                f"The database cannot answer right now ({type(exc).__name__}); try again shortly."
            ))

    return endpoint


async def body(request: Request, model: type[Lenient]) -> Any:
    data = await read_json(request, MAX_ADMIN_BODY)  # RequestTooLarge (413) beyond it
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    check_shape(data, "brackets")
    return payload(model, data)


async def known_plan(gateway: Gateway, plan: str) -> None:
    """``plan`` is in force here, or a 400 naming ``plan``. A plan this replica has not seen
    yet (created through another one a moment ago) is looked for once in the database."""
    if plan not in gateway.catalog.plans:
        await gateway.plans.sync()
    if plan not in gateway.catalog.plans:
        _no_plan(gateway, plan)


def routes(gateway: Gateway) -> list[Route]:
    def guard(handler: Any) -> Any:
        return admin_only(gateway, handler)

    def tz() -> str:
        return str(gateway.catalog.server.quota_timezone)

    def selection(request: Request) -> Selection:
        return payload(Selection, {**request.query_params, **request.path_params})

    async def list_users(request: Request) -> Response:
        users = await asyncio.to_thread(gateway.db.list_users)
        return _json({"data": [_user(u) for u in users]})

    async def get_user(request: Request) -> Response:
        name = payload(UserPath, request.path_params).name
        user = await asyncio.to_thread(gateway.db.get_user, name)
        if user is None:
            raise NotFound(f"No user named {name!r}.")
        return _json(_user(user))

    async def create_user(request: Request) -> Response:
        data = await body(request, NewUser)
        name, plan = data.name, data.plan
        await known_plan(gateway, plan)
        subscribed = None if data.subscribed_at is None else parse_instant(data.subscribed_at, tz())
        try:
            user, key_id, key = await asyncio.to_thread(gateway.db.create_user, name, plan, subscribed)
        except ValueError as exc:  # the name is taken
            raise InvalidRequest(f"name: {exc}", param="name") from None
        return _json({**_user(user), "key_id": key_id, "key": key}, 201)

    async def change_user(request: Request) -> Response:
        """Plan, subscription time and/or disabled, in one write every replica sees. A new
        plan keeps what the user used: counters are per user, the new plan's limits apply to
        the same counts."""
        name = payload(UserPath, request.path_params).name
        data = await body(request, UserChange)
        changes: dict[str, Any] = {}
        for field in data.model_fields_set:
            value = getattr(data, field)
            if field == "plan":
                if value is None:
                    raise InvalidRequest("plan: give a plan name.", param="plan")
                await known_plan(gateway, value)
            elif field == "subscribed_at" and value is not None:
                value = parse_instant(value, tz())
            elif field == "disabled" and value is None:
                raise InvalidRequest("disabled: true or false.", param="disabled")
            changes[field] = value
        if not changes:
            raise InvalidRequest(
                'Send {"plan": NAME}, {"subscribed_at": WHEN} (unix seconds, ISO 8601, or null) and/or '
                '{"disabled": true|false}.'
            )
        try:
            await asyncio.to_thread(lambda: gateway.db.update_user(name, **changes))
        except ValueError:
            raise NotFound(f"No user named {name!r}.") from None
        await gateway.keys.reload()
        user = await asyncio.to_thread(gateway.db.get_user, name)
        if user is None:
            raise NotFound(f"No user named {name!r}.")
        return _json(_user(user))

    async def create_key(request: Request) -> Response:
        data = await body(request, NewKey)
        try:
            key_id, key = await asyncio.to_thread(gateway.db.create_key, data.user, data.expires_at)
        except ValueError as exc:  # no such user
            raise InvalidRequest(f"user: {exc}", param="user") from None
        return _json({"key_id": key_id, "key": key}, 201)

    async def list_keys(request: Request) -> Response:
        keys = await asyncio.to_thread(gateway.db.list_keys, selection(request).user)
        return _json({"data": keys})

    async def revoke_key(request: Request) -> Response:
        key_id = selection(request).key_id
        if key_id is None or not await asyncio.to_thread(gateway.db.revoke_key, key_id):
            raise NotFound(f"No active key {key_id!r}.")
        await gateway.keys.reload()
        return _json({"revoked": key_id})

    async def providers(request: Request) -> Response:
        """Each deployment's circuit and counters (they live in this process: see the CLI's
        ``oneplan providers status``)."""
        return _json({"data": gateway.router.health.snapshot()})

    async def usage(request: Request) -> Response:
        try:
            return _json(await usage_report(gateway, selection(request).user))
        except ValueError as exc:  # no such user
            raise InvalidRequest(f"user: {exc}", param="user") from None

    return [
        Route("/admin/users", guard(list_users), methods=["GET"]),
        Route("/admin/users", guard(create_user), methods=["POST"]),
        Route("/admin/users/{name}", guard(get_user), methods=["GET"]),
        # A superset of the console's PATCH (plan, disabled), which this one answers for.
        Route("/admin/users/{name}", guard(change_user), methods=["PATCH"]),
        Route("/admin/keys", guard(list_keys), methods=["GET"]),
        Route("/admin/keys", guard(create_key), methods=["POST"]),
        Route("/admin/keys/{key_id}", guard(revoke_key), methods=["DELETE"]),
        Route("/admin/usage", guard(usage), methods=["GET"]),
        Route("/admin/providers", guard(providers), methods=["GET"]),
    ]


def _user(user: Any) -> dict[str, Any]:
    return {
        "name": user.name, "plan": user.plan, "created_at": user.created_at, "disabled": user.disabled,
        "subscribed_at": user.subscribed,  # when anniversary windows count from
    }


def _no_plan(gateway: Gateway, plan: str) -> None:
    raise InvalidRequest(
        f"plan: no plan {plan!r}: use one of {', '.join(sorted(gateway.catalog.plans))}.", param="plan"
    )
