"""The roll-up equals the ledger after a soak with failures, ``kill -9`` and a restart: the
journal's replay feeds the roll-up exactly like a normal flush, and only once."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from oneplan.store.db import Database
from tests.conftest import catalog_for
from tests.console.support import banner_admin_key, ledger_sums, rollup_sums, statuses
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess

EXTRA = """
[server]
ledger_flush_seconds = 600

[routing]
retries = 0
circuit_failures = 1000
"""


def burst(url: str, key: str, n: int) -> int:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    failed = 0
    for i in range(n):
        try:
            if i % 3 == 0:
                list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}], stream=True))
            else:
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}])
        except openai.APIError:
            failed += 1
    return failed


def test_rollup_equals_ledger_after_kill_and_restart(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up:
        config = tmp_path / "oneplan.toml"
        config.write_text(catalog_for(up, extra=EXTRA))
        data = tmp_path / "data"
        server = ServeProcess(config, data).start()
        try:
            banner_admin_key(server)
            alice = server.cli("users", "create", "alice", "--plan", "pro").stdout.strip()
            bob = server.cli("users", "create", "bob", "--plan", "pro").stdout.strip()
            up.fault("500", rate=0.3, seed=11)
            burst(server.url, alice, 12)
            # /v1/usage flushes the ledger: these rows reach the database before the crash...
            assert httpx.get(f"{server.url}/v1/usage", headers={"authorization": f"Bearer {alice}"}).status_code == 200
            burst(server.url, bob, 9)
            burst(server.url, alice, 6)
            # ...and these are only in the journal when the server dies.
            server.kill()
            server = ServeProcess(config, data).start()
            # A second crash right after the replay: rows replayed once are not counted twice.
            server.kill()
            server = ServeProcess(config, data).start()
            burst(server.url, bob, 4)
            assert httpx.get(f"{server.url}/v1/usage", headers={"authorization": f"Bearer {bob}"}).status_code == 200
        finally:
            server.stop()
    db = Database.open(data)
    try:
        counts = statuses(db.engine)
        assert sum(counts.values()) == 12 + 9 + 6 + 4
        assert counts["failed"] > 0
        assert rollup_sums(db.engine) == ledger_sums(db.engine)
    finally:
        db.close()
