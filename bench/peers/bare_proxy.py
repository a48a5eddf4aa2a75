"""The floor: the least a Python gateway on oneplan's stack can do per request.

One Starlette route on uvicorn (uvloop, httptools) that forwards the request body untouched to
the upstream over a pool of keep-alive connections and relays the answer, streamed or whole.
No parsing, no auth, no accounting: whatever oneplan costs above this row is its own pipeline.
It imports nothing from oneplan, so it stays the same while oneplan changes.

    python bench/peers/bare_proxy.py --port 8080 --upstream 127.0.0.1:18901
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from collections.abc import AsyncIterator

import httptools
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


class _Conn(asyncio.Protocol):
    """One keep-alive upstream connection; httptools parses the answer."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.lost = False
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.content_type = b"application/json"
        self.pieces: deque[bytes] = deque()
        self.head_done = False
        self.keep_alive = False
        self.done = False
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.done = True
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Read it now: once the message is complete, llhttp has reset the flags it looks at.
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter
        self.waiter = None


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: deque[_Conn] = deque()
        self.head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "Content-Type: application/json\r\nAuthorization: Bearer sk-fake\r\n"
                     "Content-Length: ").encode()

    async def send(self, body: bytes) -> _Conn:
        while self.idle:
            conn = self.idle.pop()
            if not conn.lost:
                break
        else:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, self.host, self.port)
        conn.reset()
        conn.transport.write(  # type: ignore[union-attr]
            b"".join((self.head, str(len(body)).encode(), b"\r\n\r\n", body)))
        while not conn.head_done:
            if conn.lost:
                raise ConnectionError("upstream closed the connection")
            await conn.wait()
        return conn

    async def body(self, conn: _Conn) -> bytes:
        while not conn.done:
            await conn.wait()
        data = b"".join(conn.pieces)
        self.release(conn)
        return data

    async def stream(self, conn: _Conn) -> AsyncIterator[bytes]:
        while True:
            while conn.pieces:
                yield conn.pieces.popleft()
            if conn.done:
                break
            await conn.wait()
        self.release(conn)

    def release(self, conn: _Conn) -> None:
        if not conn.lost and conn.keep_alive:
            self.idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()


def make_app(upstream: str) -> Starlette:
    host, port = upstream.rsplit(":", 1)
    pool = Pool(host, int(port))

    async def chat(request: Request) -> Response:
        conn = await pool.send(await request.body())
        media = conn.content_type.decode()
        if media.startswith("text/event-stream"):
            return StreamingResponse(pool.stream(conn), conn.status, media_type=media)
        return Response(await pool.body(conn), conn.status, media_type=media)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/health", health)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--upstream", default="127.0.0.1:18901", help="HOST:PORT")
    args = p.parse_args()
    uvicorn.run(make_app(args.upstream), host="127.0.0.1", port=args.port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
