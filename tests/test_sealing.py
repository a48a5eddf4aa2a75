"""Responses ``encrypted_content`` is sealed (AES-GCM) with a rotatable server key ring: a
client can neither read nor forge it, and it opens on any replica sharing the database."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from oneplan import sealing
from oneplan.errors import ConfigError
from oneplan.store.db import Database
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess
from tests.support.services import postgres_database

SECRET = "chain of thought the client must not read"


def test_seal_and_open_round_trip_and_refuse_tampering() -> None:
    ring = sealing.KeyRing([sealing.new_key()])
    token = ring.seal(SECRET.encode())
    assert token.startswith(sealing.PREFIX)
    raw = base64.urlsafe_b64decode(token[len(sealing.PREFIX):] + "==")
    assert SECRET.encode() not in raw and b"chain" not in raw
    assert ring.open(token) == SECRET.encode()
    # Any change is refused: a flipped character anywhere, another ring, a truncation, junk.
    body = token[len(sealing.PREFIX):]
    for i in (0, 5, len(body) // 2, len(body) - 2):
        flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
        assert ring.open(sealing.PREFIX + flipped) is None
    assert sealing.KeyRing([sealing.new_key()]).open(token) is None
    assert ring.open(token[:-10]) is None
    assert ring.open("oneplan.r2.!!!") is None and ring.open("gAAAA-openai") is None and ring.open(None) is None


def test_rotation_newest_seals_every_key_opens() -> None:
    old, new = sealing.new_key(), sealing.new_key()
    before = sealing.KeyRing([old]).seal(b"sealed before the rotation")
    rotated = sealing.KeyRing([new, old])
    assert rotated.open(before) == b"sealed before the rotation"
    after = rotated.seal(b"after")
    assert sealing.KeyRing([new]).open(after) == b"after"
    assert sealing.KeyRing([old]).open(after) is None  # sealed with the new key


def test_keys_from_the_environment() -> None:
    a, b = sealing.new_key(), sealing.new_key()
    env = {"RING": f"{sealing.encode_key(a)}, {sealing.encode_key(b)}"}
    ring = sealing.from_setting("env:RING", env)
    assert sealing.KeyRing([a]).open(ring.seal(b"x")) == b"x"  # the first key seals
    assert ring.open(sealing.KeyRing([b]).seal(b"y")) == b"y"  # the second still opens
    for setting, environ, needle in [
        ("literal-key", env, "env:NAME"),
        ("env:NOPE", env, "NOPE is not set"),
        ("env:RING", {"RING": "c2hvcnQ"}, "32 bytes"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            sealing.from_setting(setting, environ)


def test_the_database_ring_is_made_once_and_shared(tmp_path: Path) -> None:
    db = Database.open(tmp_path)
    first = sealing.from_database(db)
    again = sealing.from_database(Database.open(tmp_path))
    assert again.open(first.seal(b"z")) == b"z"


# -- end to end: Codex's stateless flow across two replicas --------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from postgres_database()


def _catalog(up: FakeUpstream, pg_url: str) -> str:
    return f"""
[server]
database_url = "{pg_url}"

[providers.kimi]
kind = "moonshot"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."kimi-k2.5"]
provider = "kimi"

[plans.pro]
requests_per_5h = 100
"""


def test_encrypted_content_round_trips_across_replicas_and_rejects_forgery(tmp_path: Path, pg_url: str) -> None:
    tool = {"type": "function", "name": "ls", "parameters": {"type": "object", "properties": {}}}
    with FakeUpstream(dialect="moonshot") as up:
        config = tmp_path / "oneplan.toml"
        config.write_text(_catalog(up, pg_url))
        a = ServeProcess(config, tmp_path / "a").start()
        b = ServeProcess(config, tmp_path / "b").start()
        try:
            created = a.cli("users", "create", "alice", "--plan", "pro")
            assert created.returncode == 0, created.stderr
            key = created.stdout.strip()
            headers = {"authorization": f"Bearer {key}"}
            up.reply(reasoning=SECRET, tool_calls=[{"name": "ls", "arguments": {}, "id": "call_1"}])
            first = httpx.post(f"{a.url}/v1/responses", headers=headers, timeout=30, json={
                "model": "kimi-k2.5", "input": "list files", "store": False, "tools": [tool],
                "reasoning": {"effort": "high"}, "include": ["reasoning.encrypted_content"],
            })
            assert first.status_code == 200, first.text
            output = first.json()["output"]
            (reasoning,) = [item for item in output if item["type"] == "reasoning"]
            blob = reasoning["encrypted_content"]
            assert blob.startswith(sealing.PREFIX) and "chain" not in blob
            call = next(item for item in output if item["type"] == "function_call")

            def follow_up(server: ServeProcess, item: dict) -> dict:
                up.reply("done")
                second = httpx.post(f"{server.url}/v1/responses", headers=headers, timeout=30, json={
                    "model": "kimi-k2.5", "store": False, "tools": [tool], "reasoning": {"effort": "high"},
                    "input": [
                        {"role": "user", "content": "list files"},
                        item,
                        call,
                        {"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt"},
                    ],
                })
                assert second.status_code == 200, second.text
                sent = up.requests[-1].json
                return next(m for m in sent["messages"] if m["role"] == "assistant")

            # Replica B opens what replica A sealed: Kimi gets its reasoning back on the tool turn.
            assert follow_up(b, reasoning)["reasoning_content"] == SECRET
            # A forged blob (the client's own text under the prefix) is not believed.
            forged = {**reasoning, "summary": [], "encrypted_content": sealing.PREFIX + base64.urlsafe_b64encode(b"x" * 40).decode()}
            assert follow_up(b, forged).get("reasoning_content") != SECRET
        finally:
            a.stop()
            b.stop()
