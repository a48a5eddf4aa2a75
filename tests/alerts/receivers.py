"""Real receivers on 127.0.0.1 for alert deliveries: an HTTP receiver (webhooks, chat bots,
the SMS gateway) that can fail or hang on demand, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.support.gateway import free_socket


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    answered: int | None = None  # the status sent back; None while held or when never answered

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class HttpReceiver:
    """``fail_first`` requests get a 503; while ``hold`` is set, requests get no answer."""

    fail_first: int = 0
    reply: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hold = threading.Event()
        self._release: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        self.sock = free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received(request.path, dict(request.query), dict(request.headers), await request.read())
        self.requests.append(got)
        while self.hold.is_set():  # noqa: ASYNC110 (set and cleared from the test's thread)
            await asyncio.sleep(0.01)
        status = 503 if len(self.requests) <= self.fail_first else 200
        got.answered = status
        return web.Response(body=orjson.dumps(self.reply), status=status, content_type="application/json")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.SockSite(runner, self.sock)
        self.loop.run_until_complete(site.start())
        self._runner = runner
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.hold.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.sock.close()

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 200]


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.mailbox = _Mailbox()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until ``check()`` is truthy, with a deadline (no sleeping as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
