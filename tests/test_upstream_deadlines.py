"""The provider transport's time limits, against a real HTTP server on loopback: no answer
within first token + idle, a stream silent for longer than ``idle``, a stream past ``total``.
The limits bound only waits for the provider - never the time the consumer takes between two
reads - and a kept-alive connection carries no deadline of an earlier request into the next."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from oneplan.errors import UpstreamTimeout
from oneplan.providers.base import ProviderSettings, Timeouts
from oneplan.providers.http import HttpTransport

Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]
JSON = b'{"ok": true}'


@dataclass
class Upstream:
    """Answers each request as the behaviour named by its path says."""

    behaviours: dict[str, Behaviour]
    connections: int = 0
    requests: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = next(int(v) for k, _, v in (ln.partition(": ") for ln in lines[1:]) if k.lower() == "content-length")
                await reader.readexactly(length)
                self.requests.append(path)
                await self.behaviours[path.rsplit("/", 1)[-1]](writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answer_after(seconds: float) -> Behaviour:
    async def behave(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(JSON), JSON))
        await writer.drain()

    return behave


def events_every(seconds: float, count: int | None, *, then_silent: bool = False) -> Behaviour:
    """Server-sent events, one every ``seconds``; ``count`` of them (None: without end), then
    the end of the stream - or silence, holding the connection open."""

    async def behave(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        i = 0
        while count is None or i < count:
            event = b'data: {"n": %d}\n\n' % i
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            i += 1
            await asyncio.sleep(seconds)
        if then_silent:
            await asyncio.sleep(3600)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return behave


@asynccontextmanager
async def serving(timeouts: Timeouts, **behaviours: Behaviour) -> AsyncIterator[tuple[HttpTransport, Upstream]]:
    upstream = Upstream(behaviours)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(ProviderSettings(name="up", kind="openai", base_url=f"http://127.0.0.1:{port}/v1", timeouts=timeouts))
    try:
        yield transport, upstream
    finally:
        await transport.aclose()
        server.close()


def url(transport: HttpTransport, path: str) -> str:
    return f"{transport.settings.base_url}/{path}"


async def consume(transport: HttpTransport, path: str, pause: float = 0.0) -> list[bytes]:
    got = []
    async for events in transport.post_sse(url(transport, path), {"stream": True}, {}):
        got += [data for _event, data in events]
        if pause:
            await asyncio.sleep(pause)  # a slow client downstream
    return got


def test_no_answer_within_the_limit_is_an_upstream_timeout_and_the_connection_is_closed() -> None:
    async def run() -> None:
        async with serving(Timeouts(first_token=0.2, idle=0.2, total=30), stall=answer_after(3600)) as (t, _up):
            began = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await t.post_json(url(t, "stall"), {}, {})
            assert 0.35 < time.monotonic() - began < 3  # first token + idle
            assert not t.pool()._open and not t.pool()._idle

    asyncio.run(run())


def test_a_stream_silent_past_idle_times_out_mid_stream() -> None:
    async def run() -> None:
        timeouts = Timeouts(first_token=5, idle=0.3, total=30)
        async with serving(timeouts, silent=events_every(0.01, 3, then_silent=True)) as (t, _up):
            got: list[bytes] = []
            began = time.monotonic()
            with pytest.raises(UpstreamTimeout, match="silence mid-stream"):
                async for events in t.post_sse(url(t, "silent"), {}, {}):
                    got += [data for _event, data in events]
            assert len(got) == 3
            assert 0.3 < time.monotonic() - began < 3

    asyncio.run(run())


def test_a_stream_past_its_total_limit_times_out() -> None:
    async def run() -> None:
        async with serving(Timeouts(first_token=5, idle=5, total=0.5), endless=events_every(0.05, None)) as (t, _up):
            with pytest.raises(UpstreamTimeout, match="whole answer"):
                await consume(t, "endless")

    asyncio.run(run())


def test_a_slow_consumer_is_not_the_providers_silence() -> None:
    """The provider sends an event every 0.05 s (well within idle); the client downstream
    takes 0.4 s over each (longer than idle). Nothing times out: the wait for the provider
    is what idle bounds."""

    async def run() -> None:
        async with serving(Timeouts(first_token=5, idle=0.25, total=30), steady=events_every(0.05, 4)) as (t, _up):
            got = await consume(t, "steady", pause=0.4)
            assert [g.decode() for g in got] == [f'{{"n": {i}}}' for i in range(4)]

    asyncio.run(run())


def test_a_kept_alive_connection_carries_no_earlier_deadline() -> None:
    """Request 1's deadline falls while request 2 waits on the same connection, and request 2's
    own deadline is later: request 2 is answered, on the one connection."""

    async def run() -> None:
        async with serving(Timeouts(first_token=0.2, idle=0.2, total=30), fast=answer_after(0), slow=answer_after(0.3)) as (t, up):
            assert await t.post_json(url(t, "fast"), {}, {}) == {"ok": True}  # its deadline: now + 0.4 s
            await asyncio.sleep(0.2)
            assert await t.post_json(url(t, "slow"), {}, {}) == {"ok": True}  # waits across that deadline
            for _ in range(3):  # and again, the connection idle past every deadline so far
                await asyncio.sleep(0.45)
                assert await t.post_json(url(t, "slow"), {}, {}) == {"ok": True}
            assert up.connections == 1 and len(up.requests) == 5

    asyncio.run(run())


def test_a_stream_then_a_whole_answer_on_the_same_connection() -> None:
    async def run() -> None:
        async with serving(Timeouts(first_token=0.3, idle=0.3, total=30), s=events_every(0.2, 3), slow=answer_after(0.5)) as (t, up):
            assert len(await consume(t, "s")) == 3
            assert await t.post_json(url(t, "slow"), {}, {}) == {"ok": True}  # 0.5 s < first token + idle
            assert up.connections == 1

    asyncio.run(run())
