"""A lean HTTP/1.1 client for talking to providers: keep-alive connection pools on asyncio
protocols, with httptools (the C parser uvicorn uses) reading the answers.

Why not aiohttp or httpx: by measurement (bench/, and the README's performance section) a
request through aiohttp costs ~230 µs of CPU and through this client ~35 µs, on a gateway whose
whole budget is ~500 µs a request. The parsing is httptools'; what is written here is the part
a gateway needs and no more: one origin per pool, POST with a body, answers read whole or piece
by piece, flow control, TLS, keep-alive with expiry. No proxies, redirects or cookies.

Deadlines without a timer per call: each read waits against its connection's ``deadline`` (the
loop's clock), and each connection keeps at most one timer, armed when a wait begins and none
is armed early enough. When it fires with the deadline moved later (the next request on a
kept-alive connection, the next piece of a stream), it re-arms once; with nobody waiting, it
does nothing. By measurement an ``asyncio.timeout`` around each call cost ~3 µs, once for an
answer read whole and once per read of a stream.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

import httptools

_MAX_BUFFER = 1 << 20  # pause reading past this much unread body


class ConnectionLost(Exception):
    """The connection closed before the answer was complete."""


class _Connection(asyncio.Protocol):
    __slots__ = (
        "buffered",
        "closed",
        "complete",
        "deadline",
        "error",
        "headers",
        "headers_done",
        "idle_since",
        "keep_alive",
        "parser",
        "paused",
        "pieces",
        "pool",
        "status",
        "timer",
        "timer_at",
        "transport",
        "waiter",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.pieces: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.headers_done = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.deadline = math.inf  # by when the awaited read must be done (the loop's clock)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = ConnectionLost(f"malformed HTTP answer: {exc}")
            self._wake()
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.disarm()
        if not self.complete and self.error is None:
            self.error = ConnectionLost("the connection closed before the answer was complete")
        self._wake()

    # -- the deadline ------------------------------------------------------------------------

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer, self.timer_at = None, math.inf

    def _due(self) -> None:
        self.timer, self.timer_at = None, math.inf
        if self.closed or self.waiter is None:
            return  # nobody is waiting: the next wait arms a timer again
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:
            self.timer, self.timer_at = loop.call_at(self.deadline, self._due), self.deadline
            return
        self.error = TimeoutError("no answer within the time limit")
        self._wake()
        if self.transport is not None:
            self.transport.abort()  # the answer is abandoned: the provider stops generating

    def pause_writing(self) -> None:  # requests are small: nothing to do
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self.buffered += len(body)
        if self.buffered > _MAX_BUFFER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self.deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.timer_at = loop.call_at(self.deadline, self._due), self.deadline
        self.waiter = loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    # -- reading ---------------------------------------------------------------------------

    async def read_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def next_piece(self) -> bytes:
        """All of the body that has arrived since the last call (several HTTP chunks, if the
        network brought them together); ``b""`` once it is complete."""
        while not self.pieces:
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()
        pieces = self.pieces
        piece = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self.buffered = 0
        if self.paused and self.buffered < _MAX_BUFFER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return piece


class Response:
    """An answer being read. ``release()`` (or reading it whole) hands the connection back."""

    __slots__ = ("_conn", "_done", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._done = False

    async def read(self) -> bytes:
        parts = []
        while piece := await self._conn.next_piece():
            parts.append(piece)
        self.release()
        return b"".join(parts)

    async def next_piece(self) -> bytes:
        piece = await self._conn.next_piece()
        if not piece:
            self.release()
        return piece

    def expect_by(self, deadline: float) -> None:
        """Reads from now on raise ``TimeoutError`` if what they wait for has not come by
        ``deadline`` (the event loop's clock); the connection is then closed."""
        self._conn.deadline = deadline

    def release(self) -> None:
        """Give the connection back if the answer was read to its end, else close it (so an
        abandoned stream stops the provider generating)."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed and not conn.pieces:
            conn.pool.put_back(conn)
        else:
            conn.pool.discard(conn)


class Pool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(self, base_url: str, *, max_connections: int = 200, keepalive_seconds: float = 15.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        default_port = 443 if self.secure else 80
        self.host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.ssl = (ssl_context or ssl.create_default_context()) if self.secure else None
        self.keepalive = keepalive_seconds
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._open: set[_Connection] = set()

    def put_back(self, conn: _Connection) -> None:
        conn._reset()
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        self._release_slot()

    def discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        conn.disarm()
        if conn.transport is not None and not conn.closed:
            conn.transport.close()
        self._release_slot()

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _connection(self, connect_timeout: float, deadline: float) -> _Connection:
        if self._slots is not None:
            if self._slots.locked():  # every connection is busy: wait, but not past the deadline
                async with asyncio.timeout_at(deadline if deadline < math.inf else None):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
        try:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if conn.closed or now - conn.idle_since > self.keepalive:
                    self._open.discard(conn)
                    if not conn.closed and conn.transport is not None:
                        conn.transport.close()
                    continue
                return conn
            loop = asyncio.get_running_loop()
            async with asyncio.timeout_at(min(deadline, loop.time() + connect_timeout)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
            self._open.add(conn)
            return conn
        except BaseException:
            self._release_slot()
            raise

    async def post(self, path: str, body: bytes, headers: bytes, *, connect_timeout: float,
                   deadline: float = math.inf) -> Response:
        """Send ``POST`` and wait for the answer's status and headers. ``headers`` is
        pre-encoded ``Name: value\\r\\n`` lines (the caller builds them once). Past
        ``deadline`` (the event loop's clock) - waiting for a free connection, connecting, or
        for the answer, until ``Response.expect_by`` moves it - ``TimeoutError`` is raised."""
        conn = await self._connection(connect_timeout, deadline)
        conn.deadline = deadline
        try:
            head = b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (
                (self.prefix + path).encode(), self.host_header.encode(), len(body), headers,
            )
            assert conn.transport is not None
            conn.transport.writelines((head, body))
            await conn.read_headers()
        except BaseException:
            self.discard(conn)
            raise
        return Response(conn)

    async def aclose(self) -> None:
        for conn in list(self._open) + list(self._idle):
            if conn.transport is not None and not conn.closed:
                conn.transport.close()
        self._open.clear()
        self._idle.clear()


def encode_headers(headers: dict[str, str]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
