"""The ledger against a real ``oneplan serve`` process: answers survive SIGKILL, secrets and
prompts never reach the disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import orjson

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess, oneplan_cli


def start(tmp_path: Path, up: FakeUpstream) -> tuple[ServeProcess, str, str]:
    config = tmp_path / "oneplan.toml"
    config.write_text(catalog_for(up))
    data = tmp_path / "data"
    server = ServeProcess(config, data).start()
    admin_key = next(line.strip() for line in _early_output(server) if line.strip().startswith("sk-op-admin-"))
    created = server.cli("users", "create", "alice", "--plan", "pro")
    assert created.returncode == 0, created.stderr
    return server, admin_key, created.stdout.strip()


def _early_output(server: ServeProcess) -> list[str]:
    """The banner is printed before uvicorn starts: whole once the server is ready."""
    return server.printed().splitlines()


def test_answers_survive_sigkill_right_after_they_reach_the_client(tmp_path: Path) -> None:
    with FakeUpstream(dialect="openai") as up:
        server, _admin, key = start(tmp_path, up)
        try:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
            ids = []
            for i in range(12):
                if i % 2:
                    stream = client.chat.completions.create(
                        model="m1", messages=[{"role": "user", "content": f"q{i}"}], stream=True
                    )
                    chunks = list(stream)
                    ids.append(chunks[0].id)
                else:
                    ids.append(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}]).id)
        finally:
            server.kill()  # no time to flush anything
        report = orjson.loads(oneplan_cli("usage", "--json", env=server.env).stdout)
        (alice,) = report["users"]
        assert alice["totals"]["requests"] == 12
        assert alice["totals"]["input_tokens"] == up.served_tokens.input_tokens
        assert alice["totals"]["output_tokens"] == up.served_tokens.output_tokens
        windows = {w["window"]: w for w in alice["windows"]}
        assert windows["5h"]["used"] == 12
        # And a restarted server counts them against the quota too.
        server = ServeProcess(tmp_path / "oneplan.toml", tmp_path / "data").start()
        try:
            usage = httpx.get(f"{server.url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
            assert {w["window"]: w["used"] for w in usage["users"][0]["windows"]}["5h"] == 12
            assert set(ids) <= {r for r in _ledger_ids(tmp_path / "data")}
        finally:
            server.stop()


def _ledger_ids(data_dir: Path) -> set[str]:
    from oneplan.store.db import Database

    db = Database.open(data_dir)
    try:
        return {row["id"] for row in db.ledger_rows()}
    finally:
        db.close()


def test_no_plaintext_key_or_prompt_in_the_data_directory(tmp_path: Path) -> None:
    secret_prompt = "the launch code is 7-alpha-tango-" + "x" * 8
    with FakeUpstream(dialect="openai") as up:
        server, admin_key, key = start(tmp_path, up)
        try:
            second_key = server.cli("keys", "create", "alice").stdout.strip()
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": secret_prompt}])
            assert server.terminate() == 0
        finally:
            server.stop()
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert blobs  # the database really is there
    for needle in (key, second_key, admin_key, secret_prompt, up.api_key):
        assert needle.encode() not in blobs, f"{needle[:12]}… is stored in plain text"
