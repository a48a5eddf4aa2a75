"""One request, start to end: parse, authenticate, admit, route, call, render, settle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

import orjson
from starlette.responses import Response

from oneplan import refusals
from oneplan.errors import (
    InternalError,
    InvalidRequest,
    ModelNotInPlan,
    OneplanError,
    PermissionDenied,
    QuotaExceeded,
    RequestTooLarge,
)
from oneplan.metering.counters import Demand, Reservation
from oneplan.metering.plans import Plan
from oneplan.metering.rows import LedgerRow, Status
from oneplan.metering.windows import WindowState
from oneplan.protocols.base import Protocol, StreamContext, StreamRenderer
from oneplan.protocols.canonical import Accumulator, ChatRequest, ChatResult, Delta, Usage
from oneplan.routing.catalog import ModelEntry
from oneplan.routing.router import Served
from oneplan.server.errors import error_response, internal_error
from oneplan.server.exchange import Exchange, ExchangeFactory
from oneplan.server.ids import new_id
from oneplan.server.settlement import Books, Settlement, spawn_close
from oneplan.server.sse import Answer, EventStream, Last, header_lines
from oneplan.store.db import KeyRecord

if TYPE_CHECKING:
    from oneplan.metering.counters import Counters
    from oneplan.metering.windows import Clock
    from oneplan.routing.catalog import Catalog
    from oneplan.routing.router import Router

log = logging.getLogger("oneplan")


def cap_output(chat: ChatRequest, cap: int) -> None:
    """Hold a request to the model's output limit, in the canonical form and in the body that
    a pass-through provider forwards (the protocol's own edit)."""
    if chat.max_tokens is None or chat.max_tokens <= cap:
        return
    chat.max_tokens = cap
    if chat.passthrough is not None:
        chat.passthrough = chat.passthrough.capped(cap)


def set_output(chat: ChatRequest, tokens: int) -> None:
    """Ask for at most ``tokens`` of output (the plan's room lowered it), in the canonical form
    and the pass-through body - with a thinking budget kept below it."""
    chat.max_tokens = tokens
    budget = chat.thinking.budget_tokens
    if budget is not None and budget >= tokens:
        chat.thinking.budget_tokens = max(1, tokens - 1)
    if chat.passthrough is not None:
        chat.passthrough = chat.passthrough.with_output_limit(tokens)


def fit_output(call: Call) -> None:
    """Ask upstream for no more output than the reservation holds (inside the settlement: a
    failure here still releases the reservation)."""
    granted, chat = call.reservation.output, call.request
    if granted is not None and (chat.max_tokens is None or granted < chat.max_tokens):
        set_output(chat, granted)


# The output bound a plan that meters tokens, credits or cost reserves for a request that asks
# for none and whose model declares no ``max_output_tokens`` (it is sent upstream as max_tokens).
DEFAULT_OUTPUT_BOUND = 8192


def demand(chat: ChatRequest, entry: ModelEntry, plan: Plan, key: KeyRecord, input_bound: int, now: float) -> Demand:
    """What this request may cost against each of its plan's windows."""
    multiplier = plan.multiplier(now, entry.name) if plan.peak or plan.off_peak_multiplier != 1.0 else 1.0
    requested = chat.max_tokens
    if requested is None and plan.meters_output:
        requested = entry.max_output_tokens or DEFAULT_OUTPUT_BOUND
    return Demand(
        plan.needs(entry, entry.weight, input_bound, multiplier), entry.weight, requested, multiplier,
        getattr(key, "subscribed_at", None),
    )


class Incoming(TypingProtocol):
    """What the pipeline reads of a request: Starlette's ``Request``, or ``server.hot``'s."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def receive(self) -> Callable[[], Awaitable[Any]]: ...

    @property
    def scope(self) -> Any: ...


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
    input_bound: int = 0  # the body's size: what admission reserved for its input tokens

    @property
    def protocol(self) -> Protocol:
        return self.exchange.protocol


async def read_json(request: Incoming, limit: int) -> Any:
    return (await read_body(request, limit))[0]


async def read_body(request: Incoming, limit: int) -> tuple[Any, int]:
    """The body as JSON, and its size in bytes (a bound on its tokens)."""
    length = request.headers.get("content-length")
    receive = request.receive
    if length is not None and length.isdigit() and int(length) > limit:
        await drain(receive)
        raise RequestTooLarge(f"The request body is larger than the {limit} byte limit.")
    # Straight from ASGI ``receive``: most bodies arrive in one message.
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest("The client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await drain(receive)
            raise RequestTooLarge(f"The request body is larger than the {limit} byte limit.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty: send a JSON object.")
    try:
        return orjson.loads(raw), len(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None


async def drain(receive: Any, max_bytes: int = 256 * 1024 * 1024, seconds: float = 10.0) -> None:
    """Read and drop the rest of a body that will be refused, so the client reads the 413
    instead of a connection reset (closing a socket with unread data sends RST). Bounded in
    bytes and time; past either the connection is simply closed."""
    seen = 0
    try:
        async with asyncio.timeout(seconds):
            while seen <= max_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def served_headers(reservation: Reservation, served: Served, protocol: Protocol | None = None) -> tuple[bytes, dict[str, str]]:
    """The quota headers and which model on which provider answered (a fallback may have),
    rendered (``refusals.quota_block``); and the headers left to render, if any."""
    headers = {}
    if reservation.lowered_from is not None:
        headers["x-oneplan-max-tokens-lowered"] = (
            f"{reservation.lowered_from} to {reservation.output}: what is left of the plan's "
            f"{reservation.binding or 'quota'} window"
        )
    return refusals.quota_block(reservation.states, reservation.second, protocol) + served_line(served), headers


_SERVED_LINES: dict[tuple[str, str], bytes] = {}


def served_line(served: Served) -> bytes:
    """The ``x-oneplan-served-by`` header line, rendered once per model and provider."""
    key = (served.model.name, served.deployment.provider)
    line = _SERVED_LINES.get(key)
    if line is None:
        line = header_lines({"x-oneplan-served-by": served.label})
        if len(_SERVED_LINES) < 4096:  # catalog names: a handful; bounded all the same
            _SERVED_LINES[key] = line
    return line


class Authenticator(TypingProtocol):
    """Who a key belongs to (``server.auth.KeyCache``)."""

    async def authenticate(self, key: str | None, now: float) -> KeyRecord: ...


class Pipeline:
    """Built from what it uses, each named: the catalog (models, plans, limits), the key
    cache (auth), the quota counters (admission), the router (deployments, failover) and the
    books (settlement: ledger, counters, observers)."""

    def __init__(
        self, *, catalog: Catalog, auth: Authenticator, admission: Counters, router: Router, books: Books,
        clock: Clock,
    ) -> None:
        self.catalog = catalog
        self.auth = auth
        self.admission = admission
        self.router = router
        self.books = books
        self.clock = clock

    async def handle(self, exchanges: ExchangeFactory, request: Incoming) -> Response | Answer | EventStream:
        started, t0 = self.clock(), time.perf_counter()
        exchange = exchanges()
        protocol = exchange.protocol
        try:
            key = await self.auth.authenticate(protocol.api_key(request.headers), started)
            body, size = await read_body(request, self.catalog.server.max_body_bytes)
            chat = await exchange.parse(body, key)
            chat.tenant = str(key.user_id)  # whose cached prefixes a local model may reuse
            entry, plan = self.resolve(chat.model, key)
            if entry.max_output_tokens is not None:
                cap_output(chat, entry.max_output_tokens)
            request_id = new_id(protocol)
            reservation = await self.admission.admit(
                key.user_id, plan, demand(chat, entry, plan, key, size, started), request_id
            )
        except QuotaExceeded as exc:
            self.books.ledger.record(self._row_refused(protocol, chat, key, entry, started, t0, exc))
            states = await self.windows(key, plan)
            await self.books.journaled()  # the refusal leaves once its row is in the journal
            return error_response(protocol, exc, states=states, now=started)
        except OneplanError as exc:
            return error_response(protocol, exc)
        except Exception as exc:  # a bug before admission: nothing to settle, still the caller's shape
            log.exception("internal error before admission on %s", request.scope["path"])
            return internal_error(protocol, exc)
        call = Call(request_id, exchange, chat, key, entry, plan, reservation, started, t0, input_bound=size)
        if chat.stream:
            return await self.open_stream(call)
        return await self.complete(call)

    async def windows(self, key: KeyRecord, plan: Plan) -> list[WindowState] | None:
        """The caller's quota windows as they stand, for a refusal's headers (none if the
        counters cannot say: the refusal goes out without them)."""
        try:
            return await self.admission.states(key.user_id, plan, key.subscribed_at)
        except Exception:  # an unreachable Redis, say: the refusal itself still goes out
            return None

    def resolve(self, model: str, key: KeyRecord) -> tuple[ModelEntry, Plan]:
        catalog = self.catalog
        entry = catalog.resolve(model)
        plan = catalog.plans.get(key.plan)
        if plan is None:
            raise PermissionDenied(f"Your plan '{key.plan}' is not offered any more: ask your operator.")
        if not plan.includes(entry.name):
            raise ModelNotInPlan(f"The model '{entry.name}' is not included in your plan '{plan.name}'.", param="model")
        return entry, plan

    # -- non-streamed ----------------------------------------------------------------------

    async def complete(self, call: Call) -> Response | Answer:
        settlement = Settlement(self.books, call)
        try:
            async with settlement:
                fit_output(call)
                result, served = await self.router.complete(call.request, call.entry, call.plan)
                settlement.served = served
                call.ttft = time.perf_counter() - call.t0
                ctx = self.context(call, served)
                body = orjson.dumps(call.exchange.render(result, ctx))
                settlement.ok(result.usage, completion=result.text)  # the Answer waits for its row
        except OneplanError as exc:
            return error_response(call.protocol, exc, states=call.reservation.states, now=call.started)
        except Exception as exc:
            return internal_error(call.protocol, exc)  # settled (failed) and logged on the way out
        await self.completed(call, result, ctx)
        block, headers = served_headers(call.reservation, served, call.protocol)
        return Answer(body, headers, block=block, journal=self.books.ledger)

    async def completed(self, call: Call, result: ChatResult, ctx: StreamContext) -> None:
        """The exchange's after-answer work (storing a response). The answer is settled and
        goes out whatever happens here; a failure is logged."""
        try:
            await call.exchange.completed(call, result, ctx)
        except Exception:
            log.exception("storing the answer to %s failed; it was delivered and charged", call.id)

    # -- streamed --------------------------------------------------------------------------

    async def open_stream(self, call: Call) -> Response | EventStream:
        """Reach an upstream that answers before sending the client anything, so that a failure
        up to here is a proper HTTP error the client's SDK understands."""
        settlement = Settlement(self.books, call)
        try:
            async with settlement:
                fit_output(call)
                served, first, rest = await self.router.open_stream(call.request, call.entry, call.plan)
                settlement.served = served
                interval = call.exchange.ping_interval
                deltas = rest if interval is None else with_pings(rest, interval)
                settlement.acc = Accumulator()  # from here a cancellation charges what was streamed
                ctx = self.context(call, served)
                try:
                    renderer = call.exchange.renderer(ctx)  # before the 200: its failure is a 500
                except BaseException:
                    spawn_close(deltas)
                    raise
                body = self.relay(call, settlement, ctx, renderer, first, deltas)
                block, headers = served_headers(call.reservation, served, call.protocol)
                stream = EventStream(
                    body, headers=headers, on_close=lambda: _abandon(settlement, deltas), block=block,
                    journal=self.books.ledger,
                )
                settlement.hand_off()
        except OneplanError as exc:
            return error_response(call.protocol, exc, states=call.reservation.states, now=call.started)
        except Exception as exc:
            return internal_error(call.protocol, exc)
        return stream

    async def relay(
        self, call: Call, settlement: Settlement, ctx: StreamContext, renderer: StreamRenderer,
        first: Delta | None, deltas: AsyncIterator[Delta | None],
    ) -> AsyncIterator[bytes]:
        """The one owner of the upstream stream: it reads it, and closes it however it ends."""
        acc = settlement.acc
        assert acc is not None
        limit = call.reservation.output
        meter = OutputMeter(limit) if limit is not None else None
        cut = False
        try:
            async with settlement:
                held: list[bytes] = []  # frames not yet sent: deltas that came together go together
                try:
                    held.append(renderer.start())
                    if first is not None:
                        call.ttft = time.perf_counter() - call.t0
                        acc.add(first)
                        held.append(renderer.feed(first))
                        cut = meter is not None and meter.add(first)
                        if not first.more and not cut:
                            yield b"".join(held)
                            held = []
                    if not cut:
                        async for delta in deltas:
                            if delta is None:
                                held.append(renderer.ping())
                            else:
                                acc.add(delta)
                                held.append(renderer.feed(delta))
                                if meter is not None and meter.add(delta):
                                    cut = True
                                    break
                                if delta.more:
                                    continue
                            yield b"".join(held)
                            held = []
                    if cut:
                        # The output reached what the plan reserved for it (an upstream that
                        # ignores max_tokens): end it as the protocol ends a length stop.
                        stop = Delta(finish_reason="length", usage=cut_usage(acc.usage, call, limit or 0))
                        acc.add(stop)
                        held.append(renderer.feed(stop))
                        log.warning("stream %s reached its reserved %s output tokens: ended there", call.id, limit)
                except Exception as exc:
                    error = exc if isinstance(exc, OneplanError) else InternalError(exc)
                    if error is not exc:
                        log.error("internal error relaying %s", call.id, exc_info=exc)
                    await settlement.failed(error)
                    # The stream already said 200: end it with the protocol's own error event.
                    yield Last(b"".join(held) + renderer.fail(error))
                    return
                settlement.ok(acc.usage or Usage(), completion=acc.text)
                if call.exchange.wants_result:
                    result = acc.result(id=call.id, model=ctx.model, created=ctx.created)
                    await self.completed(call, result, ctx)
                # The closing frames go out only once the row is in the journal (the stream
                # holds a ``Last`` back for it: ``EventStream.journal``).
                yield Last(b"".join(held) + renderer.finish())
        finally:
            aclose = getattr(deltas, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- rows ------------------------------------------------------------------------------

    def context(self, call: Call, served: Served) -> StreamContext:
        return StreamContext(
            response_id=call.id,
            model=served.model.name,
            created=int(call.started),
            include_usage=call.request.include_usage,
            request=call.request,
        )

    def _row_refused(
        self, protocol: Protocol, chat: ChatRequest, key: KeyRecord, entry: ModelEntry,
        started: float, t0: float, exc: QuotaExceeded,
    ) -> LedgerRow:
        row: LedgerRow = {
            "id": new_id(protocol),
            "ts": started,
            "user_id": key.user_id,
            "key_id": key.key_id,
            "protocol": protocol.name,
            "model": entry.name,
            "stream": chat.stream,
            "status": Status.REFUSED,
            "http_status": 429,
            "error_class": f"QuotaExceeded:{exc.window}",
            "weight": 0,
            "latency_ms": (time.perf_counter() - t0) * 1000.0,
        }
        self.books.observe(row)
        return row


class OutputMeter:
    """Counts a stream's output tokens as they arrive, to end a stream that runs past its
    reservation (an upstream ignoring max_tokens): a delta with content holds at least one
    token, and no tokenizer packs more than eight bytes in one. An upstream that keeps to
    max_tokens never trips it (its last token is the limit, not past it); one that does not is
    charged exactly the reservation."""

    __slots__ = ("bytes", "deltas", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.deltas = 0
        self.bytes = 0

    def add(self, delta: Delta) -> bool:
        size = len(delta.text.encode()) if delta.text else 0
        if delta.reasoning:
            size += len(delta.reasoning.encode())
        if delta.tool_calls:
            for tc in delta.tool_calls:
                size += len(tc.arguments.encode()) + len((tc.name or "").encode())
        if not size:
            return False
        self.deltas += 1
        self.bytes += size
        return delta.finish_reason is None and max(self.deltas, self.bytes // 8) > self.limit


def cut_usage(reported: Usage | None, call: Call, output: int) -> Usage:
    """What a stream ended at its reservation is charged: the upstream's input figure if it
    gave one (else an estimate within the reserved bound), and the reserved output."""
    if reported is not None and reported.input_tokens:
        return Usage(
            input_tokens=reported.input_tokens, output_tokens=output, cached_tokens=reported.cached_tokens,
            cache_write_tokens=reported.cache_write_tokens, reasoning_tokens=min(reported.reasoning_tokens, output),
        )
    return Usage(input_tokens=(call.input_bound + 3) // 4, output_tokens=output)


def _abandon(settlement: Settlement, deltas: AsyncIterator[Delta | None]) -> None:
    """The event stream closed: if its body never ran, settle and close the upstream here."""
    if not settlement.done:
        settlement.abandon()
        spawn_close(deltas)


class _Reading:
    """The state ``with_pings`` and its reader share: what was read and not yet taken, whether
    the upstream ended (and how), and who waits for whom."""

    __slots__ = ("buffer", "done", "error", "room", "waiter")

    def __init__(self) -> None:
        self.buffer: deque[Delta] = deque()
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[bool] | None = None  # the consumer's, while the buffer is empty
        self.room: asyncio.Future[None] | None = None  # the reader's, while the buffer is full

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


_READ_AHEAD = 64  # deltas read ahead of the client at most (then the upstream socket waits)


def _ping_due(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def with_pings(deltas: AsyncIterator[Delta], interval: float) -> AsyncIterator[Delta | None]:
    """The deltas, with a ``None`` every ``interval`` seconds of upstream silence.

    One task of its own reads the upstream (so that silence can be timed without cancelling a
    read) into a short buffer; this generator takes what the buffer holds and, only when it is
    empty, waits for the next delta or the interval's timer, whichever comes first - one task
    per stream, not one per delta. It owns the upstream: closing this generator cancels the
    reader, waits for it to unwind, and only then closes the upstream - never while a read is
    still running inside it."""
    loop = asyncio.get_running_loop()
    iterator = aiter(deltas)
    state = _Reading()
    buffer = state.buffer

    async def read() -> None:
        try:
            while True:
                try:
                    delta = await anext(iterator)
                except StopAsyncIteration:
                    return
                buffer.append(delta)
                state.wake()
                if len(buffer) >= _READ_AHEAD:
                    state.room = loop.create_future()
                    await state.room
        except Exception as exc:  # the consumer raises it, after what was read before it
            state.error = exc
        except BaseException as exc:  # cancelled by someone else: the stream did not end either
            state.error = exc
            raise
        finally:
            state.done = True
            state.wake()

    reader = loop.create_task(read())
    try:
        while True:
            if buffer:
                delta = buffer.popleft()
                room = state.room
                if room is not None and len(buffer) < _READ_AHEAD // 2:
                    state.room = None
                    if not room.done():
                        room.set_result(None)
                yield delta
                continue
            if state.done:
                if state.error is not None:
                    raise state.error
                return
            waiter = state.waiter = loop.create_future()
            timer = loop.call_later(interval, _ping_due, waiter)
            try:
                arrived = await waiter
            finally:
                timer.cancel()
                state.waiter = None
            if not arrived:
                yield None
    finally:
        if not reader.done():
            reader.cancel()
        try:
            await asyncio.shield(_settle_future(reader))
        except BaseException:  # the read's own outcome no longer matters
            pass
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _settle_future(future: asyncio.Future[Any]) -> None:
    try:
        await future
    except BaseException:  # cancelled or failed: either way it has stopped
        pass
