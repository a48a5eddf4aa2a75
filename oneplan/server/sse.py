"""A streaming response that ends its producer when the client goes away.

Like Starlette's ``StreamingResponse`` with a disconnect listener in the same task group: the
body iterator and a ``receive()`` watcher run side by side; whichever ends first cancels the
other, so a client that hangs up cancels the upstream request at once - even while the upstream
is silent - instead of at the next write.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE


# The bytes uvicorn refuses in a header it sends (``HEADER_RE``: in a name, a control or a
# separator; ``HEADER_VALUE_RE``: in a value, a control other than tab), taken from its own
# patterns. Each pattern is one character class, so a block holds none of them exactly when a
# table mapping them to NUL (and every other byte to "a") leaves no NUL: one ``translate`` and
# one ``memchr`` in C instead of a regular-expression search, character by character.
def _marks(refused: re.Pattern[bytes]) -> bytes:
    return bytes(0 if refused.fullmatch(bytes((b,))) else 0x61 for b in range(256))


_NAME_MARKS = _marks(HEADER_RE)
_VALUE_MARKS = _marks(HEADER_VALUE_RE)


def splits_head(names: bytes, values: bytes) -> bool:
    """Whether header names (joined by ``-``) or values (joined by spaces) hold a byte that could
    split an HTTP head or is not allowed there."""
    return b"\0" in names.translate(_NAME_MARKS) or b"\0" in values.translate(_VALUE_MARKS)


def header_lines(headers: Mapping[str, str]) -> bytes:
    """``name: value`` lines (names lower-cased), each ending in CRLF. A name or value that
    would split the head (a control character, CR, LF) raises ``RuntimeError``, one outside
    Latin-1 ``UnicodeEncodeError``."""
    if splits_head("-".join(headers).encode("latin-1"), " ".join(headers.values()).encode("latin-1")):
        raise RuntimeError("Invalid HTTP header in the answer.")
    return "".join([f"{k.lower()}: {v}\r\n" for k, v in headers.items()]).encode("latin-1")


def block_pairs(block: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines (``header_lines``, ``refusals.quota_block``) as ASGI's ``(name, value)``."""
    return [tuple(line.split(b": ", 1)) for line in block.split(b"\r\n")[:-1]]  # type: ignore[misc]


class Journal(Protocol):
    """What an answer waits for before it goes out (``metering.ledger.Ledger``)."""

    async def durable(self) -> None: ...

    def when_durable(self, then: Callable[[Exception | None], None]) -> None: ...


class Answer:
    """A whole JSON answer that the HTTP protocol writes as it is (``server/hot.py``): ``block``
    is header lines already rendered and checked (the quota headers, ``refusals.quota_block``);
    ``headers`` stay ``str`` until the head is rendered, in one encode. On the ASGI path it is
    an ASGI app like Starlette's ``Response``.

    With a ``journal``, the answer leaves only once every row recorded so far is in it, and is
    a 500 instead if writing them failed: its request's row was recorded, not yet written.
    The HTTP protocol holds it back without a task waiting (``Journal.when_durable``)."""

    __slots__ = ("block", "body", "headers", "journal", "status_code")

    def __init__(
        self, body: bytes, headers: dict[str, str], status_code: int = 200, block: bytes = b"",
        journal: Journal | None = None,
    ) -> None:
        self.body = body
        self.headers = headers
        self.status_code = status_code
        self.block = block
        self.journal = journal

    def head_block(self) -> bytes:
        """The header lines, each ending in CRLF, with the content type and length. A name or
        value that would split the head (a control character, CR, LF) is refused, and one
        outside Latin-1 raises ``UnicodeEncodeError``."""
        lines = header_lines(self.headers) if self.headers else b""
        return b"content-type: application/json\r\ncontent-length: %d\r\n%s%s" % (len(self.body), self.block, lines)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.journal is not None:
            try:
                await self.journal.durable()
            except Exception:  # logged by the ledger
                from oneplan.server.errors import internal_error

                await internal_error(scope["path"])(scope, receive, send)
                return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
        headers += block_pairs(self.block)
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class Last(bytes):
    """A stream's closing frames: the body yields nothing after them, so the HTTP protocol
    writes them with the end of the response in one write (``server/hot.py``) - once the
    stream's ``journal`` holds every row recorded so far."""

    __slots__ = ()


class EventStream:
    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
        block: bytes = b"",
        journal: Journal | None = None,
    ) -> None:
        self.body = body
        self.block = block  # header lines already rendered and checked (``Answer.block``)
        self.journal = journal  # what the closing frames (``Last``) wait for, as ``Answer``'s
        self.on_close = on_close  # called once the body is closed, however the stream ended
        self.headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        for k, v in (headers or {}).items():
            self.headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.current_task()
        assert producer is not None

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    producer.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers + block_pairs(self.block)})
            async for chunk in self.body:
                if chunk:
                    if self.journal is not None and isinstance(chunk, Last):
                        await self._journaled()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if watcher.done():  # the client went away: nothing more to send, not an error
                producer.uncancel()
                return
            raise
        except OSError:
            return  # the client went away mid-write
        finally:
            watcher.cancel()
            await self.close()

    async def _journaled(self) -> None:
        """Wait for the journal before the closing frames. A failed write (logged by the
        ledger) must not pass for a client gone mid-write (``OSError``, which ends the stream
        quietly): it is raised as the app's error, so the server cuts the stream unfinished."""
        assert self.journal is not None
        try:
            await self.journal.durable()
        except Exception as exc:
            raise RuntimeError("the answer's ledger row could not be journaled") from exc

    async def close(self) -> None:
        """Close the body, then tell ``on_close`` (also if closing the body failed)."""
        aclose = getattr(self.body, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            if self.on_close is not None:
                self.on_close()
