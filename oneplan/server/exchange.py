"""How one request meets the pipeline: its protocol's ``Turn`` (parsed request, pass-through,
rendering), plus the server state a protocol with ``stores_state`` needs - loading the stored
conversation a request continues, and storing the answer once it is whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from oneplan.metering.windows import Clock
from oneplan.protocols.base import Protocol, StreamContext, StreamRenderer, Turn
from oneplan.protocols.canonical import ChatRequest, ChatResult
from oneplan.store.db import KeyRecord

if TYPE_CHECKING:
    from oneplan.server.pipeline import Call


class StateStore(TypingProtocol):
    """Where stored turns live (``server/stored.py``)."""

    @property
    def enabled(self) -> bool: ...

    def load(self, response_id: str, user_id: int, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]] | None: ...

    def save(self, response_id: str, user_id: int, body: dict[str, Any], items: list[dict[str, Any]], now: float) -> None: ...


class Exchange:
    """One request's protocol side, made fresh for each request."""

    __slots__ = ("clock", "key", "params", "protocol", "store", "turn")

    def __init__(
        self, protocol: Protocol, store: StateStore | None = None, clock: Clock | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.protocol = protocol
        self.store = store
        self.clock = clock
        self.params = params
        self.turn: Turn | None = None
        self.key: KeyRecord | None = None

    @property
    def ping_interval(self) -> float | None:
        """Seconds of upstream silence after which the stream gets a keep-alive; None for none."""
        return self.protocol.ping_interval

    async def parse(self, body: Any, key: KeyRecord) -> ChatRequest:
        turn = self.turn = self.protocol.accept(body, self.params)
        store = self.store
        if store is not None and self.clock is not None:
            self.key = key
            previous = turn.continues
            if previous:
                found = await asyncio.to_thread(store.load, previous, key.user_id, self.clock())
                if found is None:
                    raise turn.missing()
                turn.resume(found[1])
            turn.keep(store.enabled)
        return turn.request

    def render(self, result: ChatResult, ctx: StreamContext) -> dict[str, Any]:
        if self.turn is None:
            return self.protocol.render(result, ctx)
        return self.turn.render(result, ctx)

    def renderer(self, ctx: StreamContext) -> StreamRenderer:
        if self.turn is None:
            return self.protocol.renderer(ctx)
        return self.turn.renderer(ctx)

    async def completed(self, call: Call, result: ChatResult, ctx: StreamContext) -> None:
        """The answer is whole (non-streamed, or the stream ended well): store it if asked."""
        turn, store, key = self.turn, self.store, self.key
        if turn is None or not turn.stores or store is None or key is None or self.clock is None:
            return
        body, items = turn.stored(result, ctx)
        await asyncio.to_thread(store.save, call.id, key.user_id, body, items, self.clock())

    @property
    def wants_result(self) -> bool:
        """Whether ``completed`` needs the result of a stream (so it is assembled)."""
        return self.turn is not None and self.turn.stores


ExchangeFactory = Callable[[], Exchange]
