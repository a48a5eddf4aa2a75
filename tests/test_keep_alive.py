"""Idle keep-alive connections: the client drops them first, and only the keep-alive timer closes
them on the server - silently. A server that closes an idle connection while the client sends
its next request on it resets that request (the client sees a connection error, not an answer):
that is what happens when both sides give up at the same idle time (httpx's 5 s against
uvicorn's 5 s), or when a head timer answers ``408`` to a connection merely kept alive.

The timers are the thing under test, so these tests wait real (short) times on them."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from oneplan.config import ServerConfig
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def catalog(up: FakeUpstream, server: str) -> str:
    return catalog_for(up, extra=f"[server]\n{server}")


def answer(sock: socket.socket) -> bytes:
    """One whole response (``/healthz`` answers with a content-length)."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return out


def test_the_server_keeps_an_idle_connection_longer_than_clients_do() -> None:
    # httpx (and so the openai and anthropic SDKs) drops an idle connection after 5 s.
    assert ServerConfig().keep_alive_seconds > httpx.Limits().keepalive_expiry + 10  # type: ignore[operator]


def test_a_kept_alive_connection_idle_past_the_head_timeout_still_answers(tmp_path: Path, upstream: FakeUpstream) -> None:
    with Gateway(tmp_path, catalog(upstream, "header_timeout_seconds = 0.3\nkeep_alive_seconds = 1.5")) as gw:
        with socket.create_connection(("127.0.0.1", gw.thread.port), timeout=5) as sock:
            sock.sendall(HEALTH)
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.6)  # twice the head timeout, idle between requests: no 408 on its own
            sock.sendall(HEALTH)
            assert answer(sock).startswith(b"HTTP/1.1 200 ")
            t0 = time.monotonic()
            assert sock.recv(65536) == b""  # then the keep-alive timer closes it, without a word
            assert 1.0 < time.monotonic() - t0 < 4.0
        with socket.create_connection(("127.0.0.1", gw.thread.port), timeout=5) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")  # a head begun and not finished is still reaped
            assert answer(slow).startswith(b"HTTP/1.1 408 ")
