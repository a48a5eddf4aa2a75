"""One request, start to end: parse, authenticate, admit, route, call, render, settle."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from oneplan import refusals
from oneplan.errors import (
    InvalidRequest,
    ModelNotInPlan,
    OneplanError,
    PermissionDenied,
    QuotaExceeded,
    RequestTooLarge,
)
from oneplan.metering.counters import Reservation
from oneplan.metering.windows import WindowState
from oneplan.protocols.base import Protocol, StreamContext, StreamRenderer
from oneplan.protocols.canonical import Accumulator, ChatRequest, ChatResult, Delta, Usage
from oneplan.routing.catalog import ModelEntry, Plan
from oneplan.routing.router import Served
from oneplan.server.auth import bearer
from oneplan.server.errors import error_response
from oneplan.server.sse import EventStream
from oneplan.store.db import KeyRecord

if TYPE_CHECKING:
    from oneplan.server.gateway import Gateway

ID_PREFIX = {"openai_chat": "chatcmpl-", "anthropic": "msg_", "responses": "resp_"}


# Where each protocol's body (forwarded as is to a same-dialect provider) asks for output.
_OUTPUT_FIELD = {"anthropic": "max_tokens", "responses": "max_output_tokens"}


def cap_output(chat: ChatRequest, cap: int) -> None:
    """Hold a request to the model's output limit, in the canonical form and in the body that
    a pass-through provider forwards."""
    if chat.max_tokens is None or chat.max_tokens <= cap:
        return
    chat.max_tokens = cap
    field = _OUTPUT_FIELD.get(chat.source_protocol or "")
    if field and chat.source_body is not None and field in chat.source_body:
        chat.source_body = {**chat.source_body, field: cap}


def new_id(protocol: Protocol) -> str:
    """Time-ordered (microseconds, then randomness): the ledger's primary key then grows at
    its end instead of at random pages, which keeps batched inserts cheap as it grows."""
    return f"{ID_PREFIX.get(protocol.name, 'req-')}{time.time_ns() // 1000:x}{secrets.token_hex(6)}"


class Exchange:
    """How one protocol's requests meet the pipeline. The default is the protocol itself;
    a protocol that needs server state (stored responses) subclasses it, one per request."""

    __slots__ = ("protocol",)
    # Seconds of upstream silence after which the stream gets a keep-alive; None for none.
    ping_interval: float | None = None

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol

    async def parse(self, body: Any, key: KeyRecord) -> ChatRequest:
        return self.protocol.parse(body)

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        return self.protocol.render(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        return self.protocol.renderer(ctx)

    async def completed(self, call: Call, result: ChatResult, ctx: StreamContext) -> None:
        """The answer is whole (non-streamed, or the stream ended well)."""

    @property
    def wants_result(self) -> bool:
        """Whether ``completed`` needs the result of a stream (so it is assembled)."""
        return False


ExchangeFactory = Callable[[], Exchange]


def shared(protocol: Protocol) -> ExchangeFactory:
    """A stateless exchange, shared by every request."""
    exchange = Exchange(protocol)
    return lambda: exchange


@dataclass(slots=True)
class Call:
    """What the pipeline knows of one admitted request."""

    id: str
    exchange: Exchange
    request: ChatRequest
    key: KeyRecord
    entry: ModelEntry
    plan: Plan
    reservation: Reservation
    started: float  # wall clock, for the ledger
    t0: float  # monotonic, for latencies
    ttft: float | None = None

    @property
    def protocol(self) -> Protocol:
        return self.exchange.protocol


async def read_json(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestTooLarge(f"The request body is larger than the {limit} byte limit.")
    # Straight from ASGI ``receive``: most bodies arrive in one message.
    receive = request.receive
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest("The client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The request body is larger than the {limit} byte limit.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty: send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None


def quota_headers(reservation: Reservation) -> dict[str, str]:
    return refusals.quota_headers(reservation.states, reservation.second)


def served_headers(reservation: Reservation, served: Served) -> dict[str, str]:
    """Quota headers, and which model on which provider answered (a fallback may have)."""
    headers = quota_headers(reservation)
    headers["x-oneplan-served-by"] = served.label
    return headers


class Pipeline:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def handle(self, exchanges: ExchangeFactory, request: Request) -> Response | EventStream:
        gw = self.gw
        started, t0 = gw.clock(), time.perf_counter()
        exchange = exchanges()
        protocol = exchange.protocol
        try:
            key = await gw.keys.authenticate(bearer(request.headers), started)
            body = await read_json(request, gw.catalog.server.max_body_bytes)
            chat = await exchange.parse(body, key)
            chat.source_protocol, chat.source_body = protocol.name, body
            entry, plan = self.resolve(chat.model, key)
            if entry.max_output_tokens is not None:
                cap_output(chat, entry.max_output_tokens)
        except OneplanError as exc:
            return error_response(protocol, exc)
        try:
            reservation = await gw.counters.admit(key.user_id, plan, entry.weight)
        except QuotaExceeded as exc:
            gw.ledger.record(self._row_refused(protocol, chat, key, entry, started, t0, exc))
            return error_response(protocol, exc, states=await self.windows(key, plan), now=started)
        call = Call(
            new_id(protocol),
            exchange, chat, key, entry, plan, reservation, started, t0,
        )
        if chat.stream:
            return await self.open_stream(call)
        return await self.complete(call)

    async def windows(self, key: KeyRecord, plan: Plan) -> list[WindowState] | None:
        """The caller's quota windows as they stand, for a refusal's headers (none if the
        counters cannot say: the refusal goes out without them)."""
        try:
            return await self.gw.counters.states(key.user_id, plan)
        except OneplanError:
            return None

    def resolve(self, model: str, key: KeyRecord) -> tuple[ModelEntry, Plan]:
        catalog = self.gw.catalog
        entry = catalog.resolve(model)
        plan = catalog.plans.get(key.plan)
        if plan is None:
            raise PermissionDenied(f"Your plan '{key.plan}' is not offered any more: ask your operator.")
        if not plan.includes(entry.name):
            raise ModelNotInPlan(f"The model '{entry.name}' is not included in your plan '{plan.name}'.", param="model")
        return entry, plan

    # -- non-streamed ----------------------------------------------------------------------

    async def complete(self, call: Call) -> Response:
        try:
            result, served = await self.gw.router.complete(call.request, call.entry, call.plan)
        except OneplanError as exc:
            await self.fail(call, exc)
            return error_response(call.protocol, exc, states=call.reservation.states, now=call.started)
        call.ttft = time.perf_counter() - call.t0
        ctx = self.context(call, served)
        body = orjson.dumps(call.exchange.render(result, ctx))
        await self.settle(call, served, "ok", result.usage, completion=result.text)
        await call.exchange.completed(call, result, ctx)
        return Response(body, media_type="application/json", headers=served_headers(call.reservation, served))

    # -- streamed --------------------------------------------------------------------------

    async def open_stream(self, call: Call) -> Response | EventStream:
        """Reach an upstream that answers before sending the client anything, so that a failure
        up to here is a proper HTTP error the client's SDK understands."""
        try:
            served, first, rest = await self.gw.router.open_stream(call.request, call.entry, call.plan)
        except OneplanError as exc:
            await self.fail(call, exc)
            return error_response(call.protocol, exc, states=call.reservation.states, now=call.started)
        return EventStream(self.relay(call, served, first, rest), headers=served_headers(call.reservation, served))

    async def relay(
        self, call: Call, served: Served, first: Delta | None, rest: AsyncIterator[Delta]
    ) -> AsyncIterator[bytes]:
        ctx = self.context(call, served)
        renderer = call.exchange.renderer(ctx)
        acc = Accumulator()
        settled = False
        held = [renderer.start()]  # frames not yet sent: deltas that came together go together
        try:
            if first is not None:
                call.ttft = time.perf_counter() - call.t0
                acc.add(first)
                held.append(renderer.feed(first))
                if not first.more:
                    yield b"".join(held)
                    held = []
            interval = call.exchange.ping_interval
            deltas = rest if interval is None else with_pings(rest, interval)
            async for delta in deltas:
                if delta is None:
                    held.append(renderer.ping())
                else:
                    acc.add(delta)
                    held.append(renderer.feed(delta))
                    if delta.more:
                        continue
                yield b"".join(held)
                held = []
        except OneplanError as exc:
            settled = True
            await self.fail(call, exc, served=served)
            yield b"".join(held) + renderer.fail(exc)
            return
        except BaseException:
            # The client went away (cancellation) or we are shutting down: charge what the
            # upstream reported producing, if it reported it (README, "Ledger policy").
            if not settled:
                settled = True
                self.settle_later(call, served, "cancelled", acc.usage or Usage(), acc.text)
            raise
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()
        settled = True
        await self.settle(call, served, "ok", acc.usage or Usage(), completion=acc.text)
        if call.exchange.wants_result:
            await call.exchange.completed(call, acc.result(id=call.id, model=ctx.model, created=ctx.created), ctx)
        # Only now, with the ledger row written, do the closing frames go out.
        yield b"".join(held) + renderer.finish()

    # -- settling --------------------------------------------------------------------------

    def context(self, call: Call, served: Served) -> StreamContext:
        return StreamContext(
            response_id=call.id,
            model=served.model.name,
            created=int(call.started),
            include_usage=call.request.include_usage,
            request=call.request,
        )

    def _row(self, call: Call, status: str, http_status: int, usage: Usage, served: Served | None) -> dict[str, Any]:
        model = served.model if served else call.entry
        cost = model.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        row: dict[str, Any] = {
            "id": call.id,
            "ts": call.started,
            "user_id": call.key.user_id,
            "key_id": call.key.key_id,
            "protocol": call.protocol.name,
            "model": model.name,
            "stream": call.request.stream,
            "status": status,
            "http_status": http_status,
            "weight": call.reservation.weight if status in ("ok", "cancelled") else 0,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost": cost,
            "latency_ms": (time.perf_counter() - call.t0) * 1000.0,
            "ttft_ms": None if call.ttft is None else call.ttft * 1000.0,
        }
        if served is not None:
            row["provider"] = served.deployment.provider
            row["upstream_model"] = served.deployment.upstream
            row["attempts"] = served.attempts
        if self.gw.catalog.server.store_prompts:
            row["prompt"] = orjson.dumps(call.request.messages).decode()
        return row

    async def settle(self, call: Call, served: Served, status: str, usage: Usage, completion: str | None) -> None:
        row = self._row(call, status, 200, usage, served)
        if completion is not None and self.gw.catalog.server.store_prompts:
            row["completion"] = completion
        await self.gw.counters.settle(call.reservation, usage.total_tokens, row["cost"])
        self.gw.ledger.record(row)
        self.gw.observe(row)

    def settle_later(self, call: Call, served: Served, status: str, usage: Usage, completion: str | None) -> None:
        """Settle from a cancelled task: the ledger row now, the counters in a fresh task."""
        row = self._row(call, status, 499, usage, served)
        self.gw.ledger.record(row)
        self.gw.observe(row)
        self.gw.spawn(self.gw.counters.settle(call.reservation, usage.total_tokens, row["cost"]))

    async def fail(self, call: Call, exc: OneplanError, served: Served | None = None) -> None:
        """A failed request costs the user nothing: release the reservation, log the failure."""
        await self.gw.counters.release(call.reservation)
        row = self._row(call, "failed", exc.status, Usage(), served)
        row["error_class"] = type(exc).__name__
        row["attempts"] = getattr(exc, "attempts", row.get("attempts", 1))
        self.gw.ledger.record(row)
        self.gw.observe(row)

    def _row_refused(
        self, protocol: Protocol, chat: ChatRequest, key: KeyRecord, entry: ModelEntry,
        started: float, t0: float, exc: QuotaExceeded,
    ) -> dict[str, Any]:
        row = {
            "id": new_id(protocol),
            "ts": started,
            "user_id": key.user_id,
            "key_id": key.key_id,
            "protocol": protocol.name,
            "model": entry.name,
            "stream": chat.stream,
            "status": "refused",
            "http_status": 429,
            "error_class": f"QuotaExceeded:{exc.window}",
            "weight": 0,
            "latency_ms": (time.perf_counter() - t0) * 1000.0,
        }
        self.gw.observe(row)
        return row


async def with_pings(deltas: AsyncIterator[Delta], interval: float) -> AsyncIterator[Delta | None]:
    """The deltas, with a ``None`` every ``interval`` seconds of upstream silence."""
    iterator = aiter(deltas)
    pending: asyncio.Future[Delta] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield None
                continue
            finished, pending = pending, None
            try:
                delta = finished.result()
            except StopAsyncIteration:
                return
            yield delta
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
