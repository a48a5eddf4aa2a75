"""The HTTP front's limits: what uvicorn's httptools protocol does not bound by itself.

* **Request head size**: a request line plus headers larger than ``server.max_header_bytes``
  (default 64 KiB) is answered ``431`` and the connection closed (unbounded, a hundred 1 MB header
  lines held ~100 MB).
* **Request head time**: a whole request head must arrive within
  ``server.header_timeout_seconds`` (default 10 s) of its first byte, and a new connection's
  first head within that time of opening - slowloris clients and sockets that never send a
  request are closed with ``408``.
* **Idle keep-alive**: uvicorn's ``timeout_keep_alive`` (``server.keep_alive_seconds``, default
  75 s) closes connections idle between requests, silently. Nothing else closes an idle
  kept-alive connection: a 408 racing the client's next request would reset it.

Both deadlines are kept by one timer a connection (``_tick``), not by a timer armed and
cancelled for every request as uvicorn's keep-alive does.

``configure()`` sets the limits for this process before uvicorn starts serving (workers call it
from their app factory), so the protocol class stays importable for uvicorn's worker processes.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from oneplan.server.hot import HotCycle


@dataclass(slots=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0


LIMITS = Limits()


def configure(max_header_bytes: int, header_timeout: float) -> None:
    LIMITS.max_header_bytes = max_header_bytes
    LIMITS.header_timeout = header_timeout


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head that is too large."""


class GuardedHttpTools(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_bytes = 0
        self._too_large = False
        self._hot_front = self._front()
        super().connection_made(transport)
        self._clock = self.loop.time
        self._head_since: float | None = self._clock()  # a head (or the first one) is awaited since
        self._idle_since: float | None = None  # the last answer went out, nothing arrived since
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(LIMITS.header_timeout, self._tick)

    # -- the deadlines ----------------------------------------------------------------------
    #
    # One timer a connection, never armed or cancelled per request: a request only notes when
    # its head began, an answer when it went out. The timer looks at least once every head
    # timeout, and at the exact moment a noted deadline falls due: a head that begins between
    # two looks is found by the next, which is soon enough to set the timer for it exactly.

    def _tick(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self._clock()
        wake = now + LIMITS.header_timeout
        if self._head_since is not None:
            due = self._head_since + LIMITS.header_timeout
            if now < due:
                wake = min(wake, due)
            elif self.cycle is None or self.cycle.response_complete:
                self._plain(408, "Request Timeout", "The request head did not arrive in time.")
                return
        if self._idle_since is not None:
            due = self._idle_since + self.timeout_keep_alive
            if now >= due:  # as uvicorn's keep-alive timeout: closed without a word
                self.transport.close()
                return
            wake = min(wake, due)
        self._timer = self.loop.call_at(wake, self._tick)

    def on_response_complete(self) -> None:
        # uvicorn's, with the idle time noted instead of a keep-alive timer armed per answer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self._clock()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        cycle = self.cycle
        super().connection_lost(exc)
        if isinstance(cycle, HotCycle) and cycle.disconnected:
            cycle.hung_up()

    # -- the head's size --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        if self._head_since is None:  # (a new connection's first head counts from its opening)
            self._head_since = self._clock()
        self._idle_since = None
        super().on_message_begin()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > LIMITS.max_header_bytes:
            self._too_large = True
            raise HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_since = None
        if not self._hot():
            super().on_headers_complete()

    # -- the hot routes ---------------------------------------------------------------------

    def _front(self) -> Any:
        """The app's ``FastFront`` (under whatever uvicorn wrapped it in), or None."""
        app = self.app
        for _ in range(4):
            if hasattr(app, "endpoint_for"):
                return app
            app = getattr(app, "app", None)
        return None

    def _hot(self) -> bool:
        """Start a ``HotCycle`` for a POST to a hot route; False for anything else (uvicorn's
        own cycle and the ASGI app then take it)."""
        parser = self.parser
        if parser.get_method() != b"POST" or parser.should_upgrade() or self.limit_concurrency is not None:
            return False
        front = self._hot_front
        if front is None:
            return False
        parsed = httptools.parse_url(self.url)
        path = parsed.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = self.scope
        scope["method"] = "POST"
        http_version = parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + parsed.path
        scope["query_string"] = parsed.query or b""
        endpoint = front.endpoint_for(scope)
        if endpoint is None:
            return False
        existing = self.cycle
        cycle = HotCycle(
            scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(), on_response=self.on_response_complete,
        )
        cycle.endpoint = endpoint
        self.cycle = cycle
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)
        else:  # pipelined behind a request still being answered: started when that one is
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))
        return True

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is not HotCycle or self.config.reset_contextvars:
            super()._start_asgi_task(cycle, app)
            return
        # uvicorn's, keeping the task on the cycle (which cancels it when the client hangs up)
        task = cycle.task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            limit = LIMITS.max_header_bytes
            self._plain(431, "Request Header Fields Too Large", f"The request head is over the {limit} byte limit.")
            return
        super().send_400_response(msg)

    def _plain(self, status: int, reason: str, message: str) -> None:
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body)
        )
        self.transport.close()


def uvicorn_options(server: Any) -> dict[str, Any]:
    """The uvicorn settings that go with these limits."""
    return {"http": GuardedHttpTools, "timeout_keep_alive": server.keep_alive_seconds}
