"""The shared services some tests need: PostgreSQL and Redis on 127.0.0.1.

Locally, a test that needs one that is not running is skipped, and the reason says how to start
it. Under CI (``CI`` set, as ``.ci/run`` runs) the same situation is a failure: CI starts both,
so a skip there would hide a broken set-up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

HOW = {
    "Redis": "start it with `redis-server --daemonize yes --port 6379`",
    "PostgreSQL": "start it with `pg_ctlcluster <version> main start` (trust auth for user postgres)",
}


def missing(service: str, why: object) -> None:
    message = f"needs {service} on 127.0.0.1 ({why}); {HOW[service]}"
    if os.environ.get("CI"):
        pytest.fail(message + " - CI must provide it", pytrace=False)
    pytest.skip(message)


def require_redis() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                missing("Redis", "no PONG on port 6379")
    except OSError as exc:
        missing("Redis", exc)
    return REDIS_URL


def postgres_database() -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards), as a SQLAlchemy URL."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        missing("PostgreSQL", str(exc).strip().splitlines()[0])
    name = "oneplan_test_" + secrets.token_hex(4)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


class PrivateRedis:
    """A Redis server of the test's own on a free loopback port, to kill and restart (empty,
    as a Redis without persistence comes back) without touching the shared one."""

    def __init__(self) -> None:
        import shutil

        if shutil.which("redis-server") is None:
            missing("Redis", "no redis-server binary")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the private redis-server did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class ReplyCutter:
    """A TCP hop to the shared Redis that loses replies: the command ran, its answer never
    arrived. While ``cut`` is set, every reply closes the client's connection instead of being
    passed on; ``cut_next(match)`` does that to the first reply ``match`` accepts, once. While
    ``flowing`` is clear, replies wait (a slow Redis, as the client sees it).
    Create it inside the event loop that uses it."""

    def __init__(self) -> None:
        self.cut = False
        self.cuts = 0
        self._match: Callable[[bytes], bool] | None = None
        self.server: asyncio.Server | None = None
        self.flowing = asyncio.Event()  # cleared: replies are held back until it is set again
        self.flowing.set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    def cut_next(self, match: Callable[[bytes], bool]) -> None:
        self._match = match

    def _lost(self, reply: bytes) -> bool:
        if self.cut:
            return True
        if self._match is not None and self._match(reply):
            self._match = None
            return True
        return False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)

        async def forward(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies:
                        await self.flowing.wait()
                    if replies and self._lost(data):
                        self.cuts += 1
                        break
                    dst.write(data)
            except OSError:
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(forward(reader, up_writer, False), forward(up_reader, writer, True))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
