"""The chat endpoints served straight from the HTTP protocol: no ASGI message per write.

``GuardedHttpTools`` (``front.py``) hands a request for a hot route (``FastFront.endpoint_for``)
to a ``HotCycle`` instead of uvicorn's own cycle. It is uvicorn's cycle - the same body
reading, flow control, keep-alive, pipelining and disconnect state, which the protocol drives
as before - with the answer written by the cycle itself:

* a whole answer (a ``Response``) is its status line, headers and body in one write; an
  ``Answer`` whose row must be in the journal first is held, and written by the journal
  write's callback (``Ledger.when_durable``): no task waits for it, and the answer leaves
  one loop iteration sooner;
* an event stream's head goes out with its first frames, each frame then as one chunk, with
  the writes paused while the client reads slowly; a client that hangs up cancels the stream's
  task at once (``connection_lost``), even while the upstream is silent, as ``EventStream``'s
  watcher does on the ASGI path - without a second task per stream. Its closing frames are
  held for the journal like a whole answer.

On the ASGI path (tests' in-process transports, any other server) the same endpoints run
through ``FastFront.__call__`` and the answers' own ASGI ``__call__``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from oneplan.server.errors import internal_error
from oneplan.server.sse import Answer, EventStream, Journal, Last, splits_head

log = logging.getLogger("oneplan")

Endpoint = Callable[[Any], Awaitable[Any]]


def _nothing() -> None:
    pass


class HotRequest:
    """What the pipeline reads of a request (a subset of Starlette's ``Request``): its headers
    (lower-case names; the first of a repeated header, as Starlette's ``Headers.get``), its
    body's ASGI ``receive``, its scope and path parameters."""

    __slots__ = ("headers", "path_params", "receive", "scope")

    def __init__(self, scope: Any, raw: Sequence[tuple[bytes, bytes]], receive: Callable[[], Awaitable[Any]]) -> None:
        self.scope = scope
        self.headers: Mapping[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}
        self.receive = receive
        self.path_params: dict[str, Any] = scope.get("path_params", {})


class HotCycle(RequestResponseCycle):
    """One request to a hot route (see the module's docstring)."""

    endpoint: Endpoint
    task: asyncio.Task[None] | None = None
    streaming = False
    held = False  # the answer's last bytes wait for the journal (``Answer.journal``, ``EventStream.journal``)

    async def run_asgi(self, app: Any) -> None:  # ``app`` is unused: the endpoint is bound
        if self.task is None:  # (the front sets it as it creates the task)
            self.task = asyncio.current_task()
        try:
            try:
                request = HotRequest(self.scope, self.scope["headers"], self.receive)  # type: ignore[arg-type]
                answer = await self.endpoint(request)
            except Exception:
                log.exception("unhandled error on POST %s", self.scope["path"])
                answer = internal_error(self.scope["path"])
            if isinstance(answer, EventStream):
                await self._stream(answer)
            elif isinstance(answer, Answer) and answer.journal is not None:
                self._hold(answer.journal, partial(self._journaled, answer))
            else:
                self._whole(answer)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | OSError):
                log.error("unhandled error answering POST %s", self.scope["path"], exc_info=exc)
            if not self.response_complete:
                self.transport.close()
            if isinstance(exc, asyncio.CancelledError) and not self.disconnected:
                raise
        finally:
            self.task = None
            if not self.held:
                self.on_response = _nothing  # no reference cycle to the protocol

    def _hold(self, journal: Journal, then: Callable[[Exception | None], None]) -> None:
        """Send the rest of the answer (``then``) once ``journal`` holds every row recorded so
        far, or tell ``then`` that writing them failed. No task waits: the journal write's
        callback sends it, and this cycle's task ends now."""
        self.held = True

        def release(failed: Exception | None) -> None:
            try:
                then(failed)
            except BaseException as exc:
                if not isinstance(exc, OSError):
                    log.error("unhandled error answering POST %s", self.scope["path"], exc_info=exc)
                if not self.response_complete:
                    self.transport.close()
            finally:
                self.held = False
                self.on_response = _nothing  # no reference cycle to the protocol

        journal.when_durable(release)

    def _journaled(self, answer: Answer, failed: Exception | None) -> None:
        """A held whole answer: its row is in the journal, or a 500 if writing it failed."""
        self._whole(answer if failed is None else internal_error(self.scope["path"]))

    def _ended(self, end: bytes, failed: Exception | None) -> None:
        """A held stream's closing frames and end: sent once its row is in the journal; if
        writing it failed, the stream is cut without its end (the client sees it unfinished)."""
        if failed is not None:
            self.transport.close()
        elif not self.gone():
            self.transport.write(end)
            self._complete(200)

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], extra: bytes = b"") -> bytes:
        """The status line and headers, with ``connection: close`` when the connection ends."""
        lines = [STATUS_LINE[status]]
        names = []
        values = []
        for name, value in (*self.default_headers, *headers):
            name = name.lower()
            if name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            names.append(name)
            values.append(value)
            lines.append(b"%s: %s\r\n" % (name, value))
        # One scan each instead of one per header: no header may split the head (CR, LF).
        if splits_head(b"-".join(names), b" ".join(values)):
            raise RuntimeError("Invalid HTTP header in the answer.")
        if not self.keep_alive and b"connection" not in names:
            lines.append(b"connection: close\r\n")
        lines.append(extra)
        lines.append(b"\r\n")
        return b"".join(lines)

    def _whole(self, response: Response | Answer) -> None:
        if self.disconnected:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        try:
            if isinstance(response, Answer):
                head = self._head(response.status_code, [], response.head_block())
            else:
                head = self._head(response.status_code, response.raw_headers)
        except (RuntimeError, UnicodeEncodeError):
            response = self._unsendable()
            head = self._head(response.status_code, response.raw_headers)
        self.transport.write(head + response.body)
        self._complete(response.status_code)

    def _unsendable(self) -> Response:
        """The 500 for an answer whose headers HTTP cannot carry (a CR or LF in a value, a
        character outside Latin-1); its request was settled as answered before this."""
        log.exception("the answer to POST %s has a header HTTP cannot carry", self.scope["path"])
        return internal_error(self.scope["path"], close=True)

    async def _stream(self, stream: EventStream) -> None:
        self.streaming = True
        try:
            if self.disconnected:
                return
            self.response_started = True
            self.waiting_for_100_continue = False
            try:
                pending: bytes | None = self._head(200, stream.headers, stream.block + b"transfer-encoding: chunked\r\n")
            except RuntimeError:  # before a byte of it went out: the body never runs (on_close settles)
                self._whole(self._unsendable())
                return
            async for chunk in stream.body:
                if not chunk:
                    continue
                if self.flow.write_paused and not self.disconnected:
                    await self.flow.drain()
                if self.gone():
                    return
                frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                if pending is not None:  # the head goes out with the first frames
                    frame, pending = pending + frame, None
                if isinstance(chunk, Last):  # and the end with the last ones
                    if stream.journal is None:
                        self.transport.write(frame + b"0\r\n\r\n")
                        self._complete(200)
                    else:
                        self._hold(stream.journal, partial(self._ended, frame + b"0\r\n\r\n"))
                    return
                self.transport.write(frame)
            if self.gone():
                return
            self.transport.write((pending or b"") + b"0\r\n\r\n")
            self._complete(200)
        except asyncio.CancelledError:
            if self.disconnected:  # the client went away: nothing more to send, not an error
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return
            raise
        finally:
            self.streaming = False
            await stream.close()

    def _complete(self, status: int) -> None:
        if self.access_log:  # as uvicorn's own cycle logs it
            scope = self.scope
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                get_path_with_query_string(scope), scope["http_version"], status,
            )
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()

    def gone(self) -> bool:
        """The client went away (set by the protocol, while this cycle awaited)."""
        return self.disconnected

    def hung_up(self) -> None:
        """The connection was lost (the protocol has marked the cycle disconnected): a running
        stream is cancelled, which ends the upstream request and settles what was streamed."""
        if self.streaming and self.task is not None:
            self.task.cancel()
