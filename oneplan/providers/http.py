"""HTTP transport shared by every remote provider: pooled keep-alive connections, SSE
reading, timeouts and the mapping of transport failures onto ``oneplan.errors``.

The client is ``providers/client.py``, chosen by measurement over aiohttp (see its docstring).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Callable
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from oneplan.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from oneplan.protocols.canonical import Delta
from oneplan.providers.base import ProviderSettings
from oneplan.providers.client import ConnectionLost, Pool, Response, encode_headers

_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504, 520, 522, 524, 529})
# Raised by the network layer for a provider that is unreachable or goes away mid-answer.
_NETWORK_ERRORS = (ConnectionLost, OSError)
_DEFAULT_HEADERS = {"user-agent": "oneplan", "accept-encoding": "identity"}


class HttpTransport:
    """One keep-alive connection pool per provider account."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._pool: Pool | None = None
        self._secret = settings.api_key or ""
        self._paths: dict[str, str] = {}
        self._headers: dict[int, tuple[dict[str, str], bytes]] = {}

    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(self.settings.base_url, max_connections=self.settings.max_connections)
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    def _path(self, url: str) -> str:
        """``url`` relative to the pool's origin (every URL of a provider shares it)."""
        path = self._paths.get(url)
        if path is None:
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            pool = self.pool()
            if pool.prefix and path.startswith(pool.prefix):
                path = path[len(pool.prefix):]
            self._paths[url] = path
        return path

    def _encoded(self, headers: dict[str, str]) -> bytes:
        cached = self._headers.get(id(headers))
        if cached is None or cached[0] is not headers:
            merged = {**_DEFAULT_HEADERS, **{k.lower(): v for k, v in headers.items()}}
            cached = (headers, encode_headers(merged))
            self._headers[id(headers)] = cached
        return cached[1]

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str], deadline: float) -> Response:
        return await self.pool().post(
            self._path(url), orjson.dumps(body), self._encoded(headers),
            connect_timeout=self.settings.timeouts.connect, deadline=deadline,
        )

    def redact(self, text: str) -> str:
        """Providers sometimes echo the key they were given; never pass it on."""
        if self._secret and len(self._secret) >= 8:
            text = text.replace(self._secret, "[redacted]")
        return re.sub(r"(sk-|Bearer\s+)[A-Za-z0-9_\-\.]{8,}", r"\1[redacted]", text)

    async def post_json(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        """POST and return the decoded JSON answer, within the first-token and total bounds."""
        t = self.settings.timeouts
        deadline = asyncio.get_running_loop().time() + min(t.total, t.first_token + t.idle)
        try:
            resp = await self._post(url, body, headers, deadline)
            try:
                raw = await resp.read()
            finally:
                resp.release()
            if resp.status >= 400:
                raise self.status_error(resp.status, raw, resp.headers)
        except TimeoutError:
            raise UpstreamTimeout(f"{self.settings.name}: no answer within the time limit") from None
        except _NETWORK_ERRORS as exc:
            raise self.connection_error(exc) from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(
                f"{self.settings.name}: the provider answered with malformed JSON"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamUnavailable(f"{self.settings.name}: unexpected answer from the provider")
        return data

    async def post_sse(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncGenerator[list[tuple[str | None, bytes]]]:
        """POST and yield the server-sent events as they arrive, as ``(event, data)`` pairs:
        one list for each network read that completed any (the gateway then sends what one read
        brought in one write, and its consumers step once a read, not once an event).

        The first event must come within ``first_token`` seconds, each later one within
        ``idle`` seconds; a connection that drops before the stream ended is an error, never a
        silently short answer.
        """
        t = self.settings.timeouts
        loop = asyncio.get_running_loop()
        began = loop.time()
        # The first token must come within first_token (headers included), each later read
        # within idle, and all of it within total. The deadline is the connection's: it bounds
        # only waits for the provider, never the consumer's time between reads.
        end = began + t.total
        first = True
        resp: Response | None = None
        try:
            resp = await self._post(url, body, headers, min(began + t.first_token, end))
            if resp.status >= 400:
                raw = await resp.read()
                raise self.status_error(resp.status, raw, resp.headers)
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype and "json" in ctype:
                # Some providers answer an error as plain JSON with status 200.
                raise self.body_error(await resp.read())
            event: str | None = None
            data: list[bytes] = []
            pending = b""
            while True:
                if not first:
                    resp.expect_by(min(loop.time() + t.idle, end))
                chunk = await resp.next_piece()
                if not chunk:
                    if data:
                        yield [(event, b"\n".join(data))]
                    return
                first = False
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                ready: list[tuple[str | None, bytes]] = []
                for line in lines:
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    if not line:
                        if data:
                            ready.append((event, b"\n".join(data)))
                            data = []
                        event = None
                    elif line.startswith(b"data:"):
                        data.append(line[6:] if line[5:6] == b" " else line[5:])
                    elif line.startswith(b"event:"):
                        event = line[6:].strip().decode()
                    # comments (":") and other fields are ignored
                if ready:
                    yield ready
        except TimeoutError:
            if loop.time() - began >= t.total - 0.001:
                what = f"the {t.total:g}s limit for the whole answer"
            elif first:
                what = f"{t.first_token:g}s without a first token"
            else:
                what = f"{t.idle:g}s of silence mid-stream"
            raise UpstreamTimeout(f"{self.settings.name}: timed out after {what}") from None
        except _NETWORK_ERRORS as exc:
            raise self.connection_error(exc, mid_stream=not first) from exc
        finally:
            if resp is not None:
                # Read to its end, the connection goes back to the pool; abandoned (client
                # gone, error, timeout), it is closed, so the provider stops generating.
                resp.release()

    def connection_error(self, exc: BaseException, *, mid_stream: bool = False) -> UpstreamError:
        where = "mid-stream" if mid_stream else "before answering"
        return UpstreamUnavailable(
            f"{self.settings.name}: connection failed {where} ({type(exc).__name__})"
        )

    def status_error(self, status: int, raw: bytes, headers: Any) -> UpstreamError:
        message = self.redact(_error_message(raw) or f"HTTP {status}")
        text = f"{self.settings.name} answered {status}: {message}"
        if status == 429:
            return UpstreamRateLimited(
                text, upstream_status=status, retry_after=_retry_after(headers.get("retry-after"))
            )
        if status in _RETRYABLE_STATUSES or status >= 500:
            return UpstreamUnavailable(
                text, upstream_status=status, retry_after=_retry_after(headers.get("retry-after"))
            )
        if status == 408:
            return UpstreamTimeout(text, upstream_status=status)
        if status in (401, 403):
            # oneplan's credentials for this provider are wrong: another deployment may work.
            return UpstreamError(text, upstream_status=status, retryable=True)
        return UpstreamRejected(text, upstream_status=status)

    def body_error(self, raw: bytes) -> UpstreamError:
        message = self.redact(_error_message(raw) or "unexpected non-stream answer")
        return UpstreamUnavailable(f"{self.settings.name}: {message}")


class Read(NamedTuple):
    """What one network read of a stream brought (``read_deltas``)."""

    deltas: list[Delta]  # each but the last marked ``more``
    error: Exception | None  # a bad event's, raised once the deltas before it have gone out
    done: bool  # the stream's ``[DONE]`` was among its events


def read_deltas(events: list[tuple[str | None, bytes]], parse: Callable[[bytes], list[Delta]]) -> Read:
    """The deltas of one network read's events (``parse``: an event's data to its deltas), each
    but the last marked ``more``, so that the gateway sends them in one write. A provider's
    stream steps once a read with this, instead of once an event through a generator of its own."""
    deltas: list[Delta] = []
    error: Exception | None = None
    done = False
    try:
        for _event, data in events:
            if data == b"[DONE]":
                done = True
                break
            deltas += parse(data)
    except Exception as exc:
        error = exc
    for delta in deltas[:-1]:
        delta.more = True
    return Read(deltas, error, done)


def _error_message(raw: bytes) -> str | None:
    """The human message inside a provider's error body, whatever its dialect."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:300] or None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("msg") or err.get("code") or err)[:500]
        if isinstance(err, str):
            return err[:500]
        base = data.get("base_resp")  # MiniMax
        if isinstance(base, dict) and base.get("status_msg"):
            return str(base["status_msg"])[:500]
        for key in ("message", "msg", "detail"):
            if data.get(key):
                return str(data[key])[:500]
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
