"""One interface for every channel: ``send(message)``, raising ``DeliveryFailed``."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oneplan.config import resolve_secret
from oneplan.errors import ConfigError, DeliveryFailed

# Channel I/O runs on daemon threads of its own, at most _MAX_IO at a time: a receiver that
# never answers holds one until its timeout - never a thread the gateway's requests or database
# calls need, and never the process's exit.
_MAX_IO = 8
_io_slots: dict[int, asyncio.Semaphore] = {}

_T = TypeVar("_T")


def _finish(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    loop = asyncio.get_running_loop()
    slots = _io_slots.setdefault(id(loop), asyncio.Semaphore(_MAX_IO))
    async with slots:
        future: asyncio.Future[_T] = loop.create_future()

        def run() -> None:
            try:
                result, error = fn(*args), None
            except BaseException as exc:
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_finish, future, result, error)
            except RuntimeError:
                pass  # the loop is gone (shutting down): nobody waits for this any more

        threading.Thread(target=run, name="oneplan-alerts-io", daemon=True).start()
        return await future


@dataclass(frozen=True, slots=True)
class Message:
    id: str  # the idempotency key: the same on every attempt and every replica
    payload: dict[str, Any]  # "event", "title", "text" (+ "html", "markdown"), and the figures
    timeout: float = 10.0

    @property
    def title(self) -> str:
        return str(self.payload.get("title", "oneplan"))

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))

    @property
    def markdown(self) -> str:
        return str(self.payload.get("markdown") or self.text)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(ABC):
    kind: ClassVar[str]
    Options: ClassVar[type[Options]]
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, options: dict[str, Any], where: str, *, trusted: bool = True) -> None:
        """``trusted``: the operator's catalog, where ``env:NAME`` secrets resolve; a user's own
        channel is not (it must not read the server's environment)."""
        self.name = name
        values = dict(options)
        for field in self.secret_fields:
            if isinstance(values.get(field), str) and values[field].startswith("env:"):
                if not trusted:
                    raise ValueError(f"{where}.{field}: env: references are for the operator's catalog only")
                values[field] = resolve_secret(values[field], f"{where}.{field}")
        try:
            self.options = self.Options.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            message = f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            if trusted:
                raise ConfigError(message + " (fix it in [alerts.channels])") from None
            raise ValueError(message) from None

    @abstractmethod
    async def send(self, message: Message) -> None:
        """Deliver, or raise ``DeliveryFailed``."""


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2048)


async def post(url: str, body: bytes, headers: dict[str, str], seconds: float) -> bytes:
    """POST off the event loop; any status but 2xx, or no answer in time, is ``DeliveryFailed``."""
    try:
        status, reply = await in_thread(_post, url, body, headers, seconds)
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}: {reply[:200].decode(errors='replace')}")
    return reply
