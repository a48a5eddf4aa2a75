"""One pipelined Redis connection for the admission script, the per-request round trip.

Why not redis-py here: by measurement an ``EVALSHA`` through redis-py's asyncio client costs
~125 µs of CPU (pool checkout, command objects, locks); written on one shared connection and
parsed by hiredis (redis-py's own C parser) it costs ~15 µs. Commands are written as they come
and replies matched in order, which is how Redis pipelining works. Everything that is not on
the hot path (batched budget flushes, rebuilds) stays on redis-py.

Every command has a deadline (``command_timeout``) without a timer per command: one watchdog
per connection looks at the oldest unanswered command a few times a second and, if it is late,
drops the connection, failing every command on it (the next one reconnects). ``rediss://`` URLs
connect over TLS (certificates verified unless ``ssl_cert_reqs=none``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

import hiredis


class RespError(Exception):
    """Redis answered with an error reply."""


class _Protocol(asyncio.Protocol):
    def __init__(self, command_timeout: float) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.sent: deque[float] = deque()  # when each waiter's command was sent (monotonic)
        self.command_timeout = command_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.outgoing: list[bytes] = []  # commands of this loop iteration, written together

    def send(self, command: bytes) -> None:
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outgoing.append(command)

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm()

    def _arm(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(self.command_timeout / 4, self._check)

    def _check(self) -> None:
        if self.closed:
            return
        if self.sent and time.monotonic() - self.sent[0] > self.command_timeout:
            self.fail(TimeoutError(f"Redis did not answer within {self.command_timeout:g}s"))
            return
        self._arm()

    def fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._fail_waiters(exc)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiters.popleft()
            self.sent.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._fail_waiters(ConnectionError("the connection to Redis was lost"))

    def _fail_waiters(self, exc: BaseException) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            self.sent.popleft()
            if not waiter.done():
                waiter.set_exception(exc)


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Unanswered(ConnectionError):
    """The command went out and its answer never came (the connection dropped, or the answer
    was later than the command timeout): Redis may have run it."""


class LeanRedis:
    def __init__(self, url: str, connect_timeout: float = 5.0, command_timeout: float = 2.0) -> None:
        from redis.connection import parse_url

        options = parse_url(url)
        self.ssl: ssl.SSLContext | None = None
        if url.startswith("rediss://"):
            self.ssl = ssl.create_default_context()
            if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self.command_timeout = command_timeout
        self.host = options.get("host", "127.0.0.1")
        self.port = int(options.get("port", 6379))
        self.db = int(options.get("db", 0) or 0)
        self.username = options.get("username")
        self.password = options.get("password")
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.closed:
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(self.connect_timeout):
                    _, protocol = await loop.create_connection(
                        lambda: _Protocol(self.command_timeout), self.host, self.port, ssl=self.ssl
                    )
                self._protocol = protocol
                if self.password:
                    auth = (self.username, self.password) if self.username else (self.password,)
                    await self._send(protocol, ("AUTH", *auth))
                if self.db:
                    await self._send(protocol, ("SELECT", self.db))
            return self._protocol

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> Any:
        if protocol.closed:
            raise ConnectionError("the connection to Redis was lost")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiters.append(waiter)
        protocol.sent.append(time.monotonic())
        protocol.send(_encode(args))
        try:
            reply = await waiter
        except (ConnectionError, TimeoutError) as exc:
            raise Unanswered(str(exc)) from exc
        if isinstance(reply, hiredis.ReplyError):
            raise RespError(str(reply))
        return reply

    async def command(self, *args: Any) -> Any:
        return await self._send(await self._connection(), args)

    async def evalsha(self, sha: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script by its digest, loading it on a server that does not know it yet."""
        try:
            return await self.command("EVALSHA", sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.command("EVAL", script, len(keys), *keys, *args)

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
