"""``oneplan serve`` as a newcomer meets it: first start sets up the data directory, prints the
admin key once and the next steps; later starts print no key."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.support.process import ServeProcess


def banner(server: ServeProcess) -> str:
    return server.printed()  # printed before uvicorn starts, so whole once the server is ready


def test_first_start_prints_the_admin_key_once_and_the_next_steps(tmp_path: Path) -> None:
    config = tmp_path / "oneplan.toml"
    config.write_text("[plans.team]\nrequests_per_5h = 100\n")
    data = tmp_path / "fresh" / "data"
    server = ServeProcess(config, data).start(ready="/healthz")  # no models yet: not ready
    try:
        text = banner(server)
        keys = [line.strip() for line in text.splitlines() if line.strip().startswith("sk-op-admin-")]
        assert len(keys) == 1
        assert "oneplan users create" in text and "--plan team" in text
        assert "Add a provider" in text  # no provider yet: say how to add one
        assert (data / "oneplan.db").is_file()
        users = httpx.get(f"{server.url}/admin/users", headers={"authorization": f"Bearer {keys[0]}"})
        assert users.status_code == 200
    finally:
        server.terminate()
        server.stop()
    again = ServeProcess(config, data).start(ready="/healthz")
    try:
        assert "sk-op-admin-" not in banner(again)
        assert httpx.get(f"{again.url}/healthz").json() == {"status": "ok"}
    finally:
        again.stop()


def test_every_start_says_what_was_loaded_and_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "oneplan.toml"
    config.write_text(
        '[providers.vllm]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[providers.spare]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[models."qwen3-coder"]\nprovider = "vllm"\nupstream = "Qwen/Qwen3-Coder-30B"\n'
        '[models."hidden"]\nprovider = "vllm"\n'
        '[plans.team]\nrequests_per_5h = 100\nmodels = ["qwen3-coder"]\n'
    )
    server = ServeProcess(config, tmp_path / "data").start(ready="/healthz")
    try:
        text = banner(server)
    finally:
        server.stop()
    assert f"config {config.resolve()}" in text
    assert "vllm (openai-compatible, http://127.0.0.1:9/v1)" in text
    assert "qwen3-coder -> vllm:Qwen/Qwen3-Coder-30B" in text
    assert "team (100/5h; models qwen3-coder)" in text
    assert "provider 'spare' serves no model" in text
    assert "model 'hidden' is in no plan" in text


def test_without_a_file_it_says_so_and_names_the_detected_providers(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "unused.toml", tmp_path / "data")
    del server.env["ONEPLAN_CONFIG"]
    server.env["MOONSHOT_API_KEY"] = "sk-test-not-real"
    assert "ONEPLAN_CONFIG" not in os.environ and not Path("oneplan.toml").exists()
    server.start(ready="/healthz")
    try:
        text = banner(server)
    finally:
        server.stop()
    assert "no config file" in text
    assert "moonshot ($MOONSHOT_API_KEY)" in text
    assert "sk-test-not-real" not in text
    assert "plans: default (6000/5h" in text
