"""The suite's network guard (tests/conftest.py): a test can reach loopback and nothing else."""

from __future__ import annotations

import socket

import pytest


def test_a_connect_past_loopback_fails_the_test() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match=r"127\.0\.0\.1 only"):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed anywhere


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
