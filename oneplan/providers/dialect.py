"""Providers reached in a dialect other than Chat Completions (Anthropic Messages, OpenAI
Responses): the same transport, a different codec.

A codec provider forwards a request that arrived in its own protocol as the client sent it
(pass-through, with the model name swapped for the upstream's), and rebuilds any other request
from the canonical form. Answers come back through the protocol's upstream parser, so they are
metered and re-emitted in whatever protocol the client speaks.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, ClassVar

import orjson

from oneplan.errors import UpstreamUnavailable
from oneplan.protocols.base import Codec, Protocol, UpstreamParser
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta
from oneplan.providers.base import Provider, ProviderSettings, Target
from oneplan.providers.http import HttpTransport, read_deltas


class CodecProvider(Provider):
    protocol: ClassVar[Protocol]  # the protocol this dialect is; its requests pass through
    path: ClassVar[str]  # appended to the base URL

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.http = HttpTransport(settings)
        self.url = settings.base_url.rstrip("/") + self.path
        self.headers = {"content-type": "application/json", **self.auth_headers(settings), **settings.headers}

    @abstractmethod
    def auth_headers(self, settings: ProviderSettings) -> dict[str, str]: ...

    @property
    def codec(self) -> Codec:
        codec = self.protocol.codec
        assert codec is not None, f"{self.protocol.name} has no outbound codec"
        return codec

    def encode(self, request: ChatRequest, upstream: str) -> dict[str, Any]:
        """The canonical request in this dialect."""
        return self.codec.encode(request, upstream)

    def decode(self, body: dict[str, Any]) -> ChatResult:
        """A whole answer in this dialect, as canonical."""
        return self.codec.decode(body)

    def parser(self) -> UpstreamParser:
        """A fresh incremental stream parser: ``feed(event: dict) -> list[Delta]``."""
        return self.codec.stream_parser()

    def passes_through(self, request: ChatRequest) -> bool:
        passthrough = request.passthrough
        return passthrough is not None and passthrough.protocol is self.protocol

    def build_body(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        if self.passes_through(request):
            assert request.passthrough is not None
            return request.passthrough.for_upstream(target.upstream, stream=stream)
        body = self.encode(request, target.upstream)
        body["stream"] = stream
        return body

    async def aclose(self) -> None:
        await self.http.aclose()

    async def complete(self, request: ChatRequest, target: Target) -> ChatResult:
        data = await self.http.post_json(self.url, self.build_body(request, target, stream=False), self.headers)
        return self.decode(data)

    def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        return self._events(self.build_body(request, target, stream=True))

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[Delta]:
        """The deltas, one network read at a time (``read_deltas``). A bad event ends the
        stream with an error, after the deltas before it (in its read too)."""
        parser = self.parser()

        def parse(data: bytes) -> list[Delta]:
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamUnavailable(f"{self.name}: malformed JSON in the stream") from None
            return parser.feed(event) if isinstance(event, dict) else []

        async with aclosing(self.http.post_sse(self.url, body, self.headers)) as reads:
            async for events in reads:
                read = read_deltas(events, parse)
                for delta in read.deltas:
                    yield delta
                if read.error is not None:
                    raise read.error
                if read.done:
                    return
