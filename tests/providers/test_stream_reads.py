"""A provider's stream steps once per network read, not once per event: the deltas of one read
come marked ``more`` but the last (so the gateway sends them in one write), and a bad event ends
the stream with an error only after the deltas before it in the same read. The upstream here is
a raw loopback server that sends its whole answer in one ``write``, as a fast provider's burst
arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from oneplan.errors import UpstreamUnavailable
from oneplan.protocols.canonical import Delta
from oneplan.providers.base import Provider, ProviderSettings, Timeouts, provider_class
from tests.fakes.harness import request, target

pytestmark = pytest.mark.anyio


def _openai(*texts: str) -> list[bytes]:
    chunks = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    return [orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m", **c}) for c in chunks]


def _anthropic(*texts: str) -> list[bytes]:
    start = {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 0},
    }}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}} for t in texts]
    return [orjson.dumps(e) for e in (start, block, *deltas)]


def _openai_end() -> list[bytes]:
    end = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    return [orjson.dumps(end), b"[DONE]"]


def _anthropic_end() -> list[bytes]:
    return [orjson.dumps(e) for e in (
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    )]


DIALECTS = {
    "openai-compatible": (_openai, _openai_end),
    "anthropic-compatible": (_anthropic, _anthropic_end),
}


@asynccontextmanager
async def burst(kind: str, events: list[bytes]) -> AsyncIterator[Provider]:
    """A provider of ``kind`` whose upstream answers every request with ``events``, all of
    them (status line, headers and chunked body) in one write."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in (b"data: " + e + b"\n\n" for e in events))
    answer = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
              + body + b"0\r\n\r\n")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = ProviderSettings(
        name="burst", kind=kind, base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-burst",
        timeouts=Timeouts(connect=2, first_token=5, idle=5, total=10),
    )
    provider = provider_class(kind)(settings)
    try:
        yield provider
    finally:
        await provider.aclose()
        server.close()


async def _read(provider: Provider, into: list[Delta]) -> None:
    async for delta in provider.stream(request("m"), target("m")):
        into.append(delta)


@pytest.mark.parametrize("kind", sorted(DIALECTS))
async def test_the_deltas_of_one_read_come_marked_more_but_the_last(kind: str) -> None:
    events, end = DIALECTS[kind]
    got: list[Delta] = []
    async with burst(kind, [*events("a", "b", "c"), *end()]) as provider:
        await _read(provider, got)
    texts = [d for d in got if d.text]
    assert [d.text for d in texts] == ["a", "b", "c"]
    assert [d.more for d in got] == [True] * (len(got) - 1) + [False]
    assert got[-1].finish_reason == "stop"


@pytest.mark.parametrize("kind", sorted(DIALECTS))
async def test_a_bad_event_ends_the_stream_after_the_deltas_before_it_in_its_read(kind: str) -> None:
    events, end = DIALECTS[kind]
    got: list[Delta] = []
    async with burst(kind, [*events("a", "b"), b'{"choices": [', *events("never"), *end()]) as provider:
        with pytest.raises(UpstreamUnavailable, match="malformed JSON"):
            await _read(provider, got)
    assert [d.text for d in got if d.text] == ["a", "b"]
    assert got[-1].more is False  # the last before the error: the gateway sends it, then the error
