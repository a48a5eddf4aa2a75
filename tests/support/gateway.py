"""A real oneplan app under a real uvicorn server on 127.0.0.1, in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from oneplan.config import CatalogFile
from oneplan.routing.catalog import build
from oneplan.server import front
from oneplan.server.app import create_app
from oneplan.server.gateway import Gateway as GatewayState
from oneplan.store.db import Database


class ManualClock:
    """An injected clock: tests move time, nothing sleeps."""

    def __init__(self, start: float | None = None) -> None:
        self.now = start if start is not None else time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every answer written in two parts waits out the client's delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """Any ASGI app served by uvicorn in a thread; ``url`` once started."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", loop="asyncio", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died while starting")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start within 30 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


class Gateway:
    """The whole gateway, configured from a catalog string, with a user 'alice'."""

    def __init__(
        self, tmp_path: Path, catalog_toml: str, *, clock: Any = None, user_plan: str | None = None,
        source: str = "test.toml",
    ) -> None:
        import tomllib

        self.data_dir = tmp_path / "oneplan-data"
        self.catalog = build(CatalogFile.model_validate(tomllib.loads(catalog_toml)), source)
        self.clock = clock or time.time
        plan = user_plan or next(iter(self.catalog.plans))
        db = Database.open(self.data_dir, self.catalog.server.database_url)
        self.admin_key = db.ensure_admin_key()
        _user, _key_id, self.key = db.create_user("alice", plan)
        db.close()
        self.state = GatewayState(self.catalog, self.data_dir, clock=self.clock)
        server = self.catalog.server
        front.configure(server.max_header_bytes, server.header_timeout_seconds)
        self.thread = ServerThread(create_app(self.state), **front.uvicorn_options(server))  # as `oneplan serve`

    def __enter__(self) -> Gateway:
        self.thread.start()
        self.base_url = self.thread.url
        return self

    def __exit__(self, *exc: Any) -> None:
        self.thread.stop()

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (to inspect or flush its state)."""
        assert self.thread.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.thread.loop).result(30)

    def create_user(self, name: str, plan: str) -> str:
        _user, _key_id, key = self.state.db.create_user(name, plan)
        self.run(self.state.keys.reload())
        return key

    def ledger(self) -> list[dict[str, Any]]:
        self.run(self.state.ledger.flush())
        return self.state.db.ledger_rows()
