"""``with_pings``: an upstream's deltas with a ``None`` (a ping frame) for each interval of
silence, read by one task per stream; how it ends, fails and closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from oneplan.protocols.canonical import Delta
from oneplan.server.pipeline import _READ_AHEAD, with_pings


class Upstream:
    """Deltas released on demand; records how far it was read and when it was closed."""

    def __init__(self) -> None:
        self.gate = asyncio.Queue[Delta | Exception | None]()
        self.read = 0
        self.closed_while_reading = False
        self.reading = False
        self.waiting = asyncio.Event()  # set while a read waits for the next delta
        self.closed = False

    async def deltas(self) -> AsyncIterator[Delta]:
        try:
            while True:
                self.reading = True
                self.waiting.set()
                try:
                    item = await self.gate.get()
                finally:
                    self.reading = False
                    self.waiting.clear()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                self.read += 1
                yield item
        finally:
            self.closed_while_reading = self.reading
            self.closed = True


def test_silence_is_pinged_and_deltas_keep_their_order() -> None:
    async def go() -> list[str | None]:
        up = Upstream()
        out: list[str | None] = []
        stream = with_pings(up.deltas(), 0.01)
        up.gate.put_nowait(Delta(text="a"))
        out.append((await anext(stream)).text)  # type: ignore[union-attr]
        assert await anext(stream) is None  # nothing for an interval: a ping
        for text in "bcd":
            up.gate.put_nowait(Delta(text=text))
        up.gate.put_nowait(None)
        out += [d.text if d is not None else None async for d in stream]
        assert up.closed
        return out

    out = asyncio.run(go())
    assert [x for x in out if x is not None] == ["a", "b", "c", "d"]


def test_an_upstream_failure_comes_after_what_was_read_before_it() -> None:
    async def go() -> None:
        up = Upstream()
        stream = with_pings(up.deltas(), 5.0)
        up.gate.put_nowait(Delta(text="a"))
        up.gate.put_nowait(RuntimeError("upstream broke"))
        assert (await anext(stream)).text == "a"  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match="upstream broke"):
            await anext(stream)

    asyncio.run(go())


def test_the_reader_stays_a_bounded_distance_ahead_of_a_slow_client() -> None:
    async def go() -> None:
        up = Upstream()
        stream = with_pings(up.deltas(), 5.0)
        for i in range(_READ_AHEAD * 3):
            up.gate.put_nowait(Delta(text=str(i)))
        await anext(stream)
        for _ in range(_READ_AHEAD * 4):  # turns of the loop enough to read everything queued
            await asyncio.sleep(0)
        assert up.read <= _READ_AHEAD + 1  # it waits for room instead of reading everything
        got = [d async for d in _take(stream, _READ_AHEAD * 3 - 1)]
        assert [d.text for d in got if d is not None] == [str(i) for i in range(1, _READ_AHEAD * 3)]
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(go())


async def _take(stream: AsyncIterator[Delta | None], n: int) -> AsyncIterator[Delta | None]:
    for _ in range(n):
        yield await anext(stream)


def test_closing_cancels_the_read_then_closes_the_upstream() -> None:
    async def go() -> Upstream:
        up = Upstream()
        stream = with_pings(up.deltas(), 5.0)
        up.gate.put_nowait(Delta(text="a"))
        await anext(stream)
        await up.waiting.wait()
        await stream.aclose()  # type: ignore[attr-defined]  # mid-read: the client went away
        return up

    up = asyncio.run(go())
    assert up.closed and not up.closed_while_reading
