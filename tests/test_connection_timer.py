"""The front keeps a connection's deadlines - a head must arrive within the head timeout, an idle
kept-alive connection closes after the keep-alive time - with one timer a connection, never a
timer armed and cancelled per request. Driven on a virtual clock: the protocol's loop is a real
event loop whose ``time``/``call_later``/``call_at`` are the test's."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from oneplan.server import front
from oneplan.server.front import GuardedHttpTools

HEAD_TIMEOUT, KEEP_ALIVE = 10.0, 75.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


ANSWERED: list[asyncio.Event] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})  # the cycle is complete on return
    ANSWERED[-1].set()


class Timer:
    def __init__(self, clock: VirtualClock, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False
        clock.armed += 1
        heapq.heappush(clock.timers, (when, next(clock.order), self))

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """The loop's clock and timers, moved by the test."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, int, Timer]] = []
        self.order = itertools.count()
        self.armed = 0
        self.loop = loop

    def pending(self) -> list[float]:
        return sorted(t.when for _, _, t in self.timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.timers and self.timers[0][0] <= end:
            when, _, timer = heapq.heappop(self.timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback()
        self.now = end


class ClockedLoop:
    """A real loop for tasks, the virtual clock for time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: VirtualClock) -> None:
        self._loop, self._clock = loop, clock

    def time(self) -> float:
        return self._clock.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return Timer(self._clock, when, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return Timer(self._clock, self._clock.now + delay, callback)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 4000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect(loop: asyncio.AbstractEventLoop) -> tuple[GuardedHttpTools, Transport, VirtualClock]:
    front.configure(64 * 1024, HEAD_TIMEOUT)
    clock = VirtualClock(loop)
    config = Config(app, timeout_keep_alive=int(KEEP_ALIVE), log_level="warning")
    protocol = GuardedHttpTools(config, ServerState(), {}, _loop=ClockedLoop(loop, clock))  # type: ignore[arg-type]
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport, clock


async def answered(protocol: GuardedHttpTools, transport: Transport, data: bytes) -> None:
    ANSWERED.append(asyncio.Event())
    protocol.data_received(data)
    await ANSWERED[-1].wait()
    assert transport.written.endswith(b"\r\n\r\nok")


def test_requests_arm_no_timer_and_an_idle_connection_closes_at_the_keep_alive_time() -> None:
    async def go() -> None:
        protocol, transport, clock = connect(asyncio.get_running_loop())
        assert clock.pending() == [clock.now + HEAD_TIMEOUT] and clock.armed == 1
        for _ in range(50):
            await answered(protocol, transport, REQUEST)
            clock.advance(0.01)
        assert clock.armed == 1  # fifty requests, not one timer more
        idle_from = clock.now - 0.01
        clock.advance(KEEP_ALIVE - 0.02)  # polled meanwhile, once a head timeout
        assert not transport.closed
        assert clock.armed <= 1 + KEEP_ALIVE / HEAD_TIMEOUT + 1
        clock.advance(0.02)
        assert transport.closed and clock.now >= idle_from + KEEP_ALIVE
        assert b"408" not in transport.written  # an idle connection is closed without a word
        protocol.connection_lost(None)

    asyncio.run(go())


def test_a_head_begun_between_two_looks_is_refused_exactly_at_its_deadline() -> None:
    async def go() -> None:
        protocol, transport, clock = connect(asyncio.get_running_loop())
        await answered(protocol, transport, REQUEST)
        clock.advance(3.7)  # idle for a while, then half a head
        began = clock.now
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nHo")
        clock.advance(HEAD_TIMEOUT - 0.001)
        assert not transport.closed
        clock.advance(0.001)
        assert transport.closed and clock.now == began + HEAD_TIMEOUT
        assert transport.written.endswith(b"The request head did not arrive in time.")
        assert b"408 Request Timeout" in transport.written
        protocol.connection_lost(None)

    asyncio.run(go())


@pytest.mark.parametrize("late", [None, b"GET /healthz HTTP/1.1\r\nHo"], ids=["nothing", "half-a-head-late"])
def test_a_new_connections_first_head_counts_from_the_opening(late: bytes | None) -> None:
    """Whether it sends nothing or begins its head a second before the deadline and stops."""

    async def go() -> None:
        protocol, transport, clock = connect(asyncio.get_running_loop())
        clock.advance(HEAD_TIMEOUT - 1)
        if late is not None:
            protocol.data_received(late)
        clock.advance(1 - 0.001)
        assert not transport.closed
        clock.advance(0.001)
        assert transport.closed and b"408 Request Timeout" in transport.written
        protocol.connection_lost(None)

    asyncio.run(go())
