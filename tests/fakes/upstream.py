"""``FakeUpstream``: a real HTTP server on 127.0.0.1 that speaks one provider's dialect.

It runs aiohttp in a background thread with its own event loop, so it serves sync and async
tests alike and takes a hundred concurrent requests without blinking. Tests script it::

    with FakeUpstream(dialect="zhipu") as up:
        up.reply(text="hi", reasoning="...", tool_calls=[{"name": "f", "arguments": {}}])
        up.fault("429", retry_after=2)           # the next request gets a 429
        up.fault("500", rate=0.2, seed=7)        # from now on, 20% of requests fail
        ... call the gateway with base_url=up.base_url, api_key=up.api_key ...
        up.requests[-1].json                     # what the gateway sent
        up.served_tokens                         # what the fake billed, for ledger checks
        up.wait_until(lambda: up.cancelled == 1) # the gateway abandoned a stream
        up.respond(lambda body: {"text": "..."})  # answer each request from its body (a script)

Faults (one per request, in order; ``times=N`` repeats one):
``"<status>"`` (e.g. "401", "429", "500", "503", "529") - that status with the dialect's error
body (and ``Retry-After`` when ``retry_after`` is given); ``"hang"`` - accept and never answer;
``"drop_mid_stream"`` - send ``after`` frames then cut the TCP connection; ``"malformed_json"``;
``"drip"`` - answer with ``delay`` seconds between frames; ``"stream_error"`` - an error event in
the dialect's shape after ``after`` frames; ``"error_in_200"`` - an error inside a 200 answer
(MiniMax's ``base_resp`` style).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import chat, messages, responses  # noqa: F401 - they register their dialects
from tests.fakes.answers import Answer, Tokens, plan
from tests.fakes.dialect import DIALECTS, Dialect

FAULT_KINDS = ("hang", "drop_mid_stream", "malformed_json", "drip", "stream_error", "error_in_200")


@dataclass(slots=True)
class Recorded:
    """One request as the fake received it. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    raw: bytes

    @property
    def body(self) -> Any:
        return self.json


@dataclass(slots=True)
class Fault:
    kind: str
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.05
    after: int = 2
    status: int = 500
    message: str | None = None

    @property
    def http_status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


@dataclass
class _Injector:
    fault: Fault
    rate: float
    rng: random.Random = field(default_factory=random.Random)


class FakeUpstream:
    def __init__(
        self,
        dialect: str = "openai",
        *,
        api_key: str | None = "sk-fake-upstream-key",
        prefix: str | None = None,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}: use one of {', '.join(DIALECTS)}")
        self.dialect: Dialect = DIALECTS[dialect]()
        self.api_key = api_key
        self.prefix = self.dialect.prefix if prefix is None else prefix.rstrip("/")
        self.requests: list[Recorded] = []
        self.served_tokens = Tokens()
        self.served_answers = 0
        self._answers: deque[Answer] = deque()
        self._responder: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._faults: deque[Fault] = deque()
        self._injector: _Injector | None = None
        self._active = 0
        self._cancelled = 0
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client is configured with: the provider's real path prefix included."""
        return self.url + self.prefix

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        async def setup() -> None:
            self._release = asyncio.Event()
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(
                app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
            )
            await self._runner.setup()
            await web.SockSite(self._runner, sock, backlog=512).start()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(setup())
            except BaseException as exc:  # report it to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-{self.dialect.name}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self._thread.join(1)
            self._loop = self._thread = None
            raise RuntimeError("the fake upstream did not start") from (failure[0] if failure else None)

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None or self._thread is None:
            return
        if self._release is not None:
            loop.call_soon_threadsafe(self._release.set)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = self._runner = self._thread = None

    # -- scripting -------------------------------------------------------------------------

    def reply(
        self,
        text: str | None = None,
        *,
        reasoning: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        usage: tuple[int, int] | None = None,
        cached: int = 0,
        finish: str | None = None,
        times: int = 1,
        cache_write: int = 0,
        cache_write_1h: int = 0,
    ) -> FakeUpstream:
        """Queue the next answer(s). With an empty queue the fake answers a short greeting
        (with reasoning, when the request has thinking on). ``usage=(input, output)`` with
        ``cached`` / ``cache_write`` / ``cache_write_1h`` fixes what the fake reports (input
        includes the cache classes; each dialect reports them in its own convention)."""
        answer = Answer.make(text, reasoning, tool_calls, usage, cached, finish, cache_write, cache_write_1h)
        with self._lock:
            self._answers.extend([answer] * times)
        return self

    def respond(self, responder: Callable[[dict[str, Any]], dict[str, Any]] | None) -> FakeUpstream:
        """Answer every request the queue does not from its body: ``responder(body)`` returns
        ``reply()``'s keyword arguments (a scripted model that reads the conversation)."""
        with self._lock:
            self._responder = responder
        return self

    def fault(
        self,
        kind: str,
        *,
        times: int = 1,
        retry_after: float | None = None,
        delay: float = 0.05,
        after: int = 2,
        status: int = 500,
        message: str | None = None,
        rate: float | None = None,
        seed: int | None = None,
    ) -> FakeUpstream:
        """Queue a fault for the next request(s), or with ``rate`` inject it at random (seeded)
        into every later request until ``clear_faults()``."""
        if not kind.isdigit() and kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}: a status or one of {FAULT_KINDS}")
        spec = Fault(kind, times, retry_after, delay, after, status, message)
        with self._lock:
            if rate is not None:
                self._injector = _Injector(spec, rate, random.Random(seed))
            else:
                self._faults.append(spec)
        return self

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._injector = None

    # -- observation -----------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Requests in flight right now."""
        return self._active

    @property
    def cancelled(self) -> int:
        """Requests the client abandoned before the fake finished answering."""
        return self._cancelled

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` holds (re-checked whenever the fake's state changes)."""
        with self._lock:
            return bool(self._lock.wait_for(predicate, timeout))

    def _changed(self, **delta: int) -> None:
        with self._lock:
            self._active += delta.get("active", 0)
            self._cancelled += delta.get("cancelled", 0)
            self._lock.notify_all()

    def _next(self) -> tuple[Fault | None, Answer | None]:
        """The next fault, and the next queued answer (None: answer by the responder or default)."""
        with self._lock:
            fault = None
            if self._faults:
                fault = self._faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.popleft()
            elif self._injector and self._injector.rng.random() < self._injector.rate:
                fault = self._injector.fault
            return fault, self._answers.popleft() if self._answers else None

    def _respond(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            responder = self._responder
        return Answer.make(**responder(body)) if responder is not None else Answer.default()

    # -- serving ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._changed(active=1)
        try:
            return await self._serve(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self._changed(cancelled=1)
            raise
        finally:
            self._changed(active=-1)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(Recorded(request.method, request.path, headers, body, raw))
            self._lock.notify_all()
        d = self.dialect
        if request.path != self.prefix + d.endpoint:
            return self._error(404, f"no route for {request.method} {request.path}")
        if self.api_key is not None and not d.authorized(headers, self.api_key):
            return self._error(401)
        if request.method != "POST" or not isinstance(body, dict):
            return self._error(400, "the body must be a JSON object")
        fault, queued = self._next()
        answer = queued if queued is not None else self._respond(body)
        if fault is not None and fault.http_status is not None:
            extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after else {}
            return self._error(fault.http_status, fault.message, extra)
        problem = d.check(body, headers)
        if problem is not None:
            return self._error(*problem)
        kind = fault.kind if fault else None
        if kind == "hang":
            assert self._release is not None
            await self._release.wait()
            raise asyncio.CancelledError
        if kind == "error_in_200":
            return web.json_response(d.error_in_200(fault.status, fault.message))  # type: ignore[union-attr]
        thinks, budget = d.thinking(body)
        cache = d.cache.lookup(body) if d.cache is not None and answer.usage is None else None
        the_plan = plan(answer, body, thinking=thinks, budget=budget, cache=cache)
        if not d.wants_stream(body):
            if kind == "malformed_json":
                return web.Response(body=b'{"id": "broken", "choices": [', content_type="application/json")
            if kind == "drop_mid_stream":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            if kind == "drip":
                await asyncio.sleep(fault.delay)  # type: ignore[union-attr]
            out, reported = d.answer(body, the_plan)
            response = web.Response(body=orjson.dumps(out), content_type="application/json")
            self._served(reported)
            return response
        return await self._stream(request, body, the_plan, fault)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], the_plan: Any, fault: Fault | None
    ) -> web.StreamResponse:
        frames, reported = self.dialect.frames(body, the_plan)
        kind = fault.kind if fault else None
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        for number, frame in enumerate(frames):
            if fault is not None and number == fault.after:
                if kind == "drop_mid_stream":
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if kind == "malformed_json":
                    frame = self.dialect.malformed_frame()
                if kind == "stream_error":
                    await response.write(self.dialect.stream_error(fault.status, fault.message))
                    await response.write_eof()
                    return response
            if kind == "drip" and number:
                await asyncio.sleep(fault.delay)  # type: ignore[union-attr]
            if number == len(frames) - 1 and kind != "malformed_json":
                # Billed as the last frame goes out: a client that has read the whole answer
                # can rely on the fake's count already including it.
                self._served(reported)
            await response.write(frame)
        if not frames and kind != "malformed_json":
            self._served(reported)
        await response.write_eof()
        return response

    def _served(self, reported: Tokens | None) -> None:
        with self._lock:
            self.served_answers += 1
            if reported is not None:
                self.served_tokens.add(reported)
            self._lock.notify_all()

    def _error(
        self, status: int, message: str | None = None, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = orjson.dumps(self.dialect.error_body(status, message))
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)
