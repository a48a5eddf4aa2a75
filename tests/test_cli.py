"""The command-line contract scripts depend on, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CATALOG = """
[providers.fake]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"

[models."m1"]
provider = "fake"

[plans.pro]
requests_per_5h = 10
requests_per_week = 20
"""


def oneplan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oneplan.cli.main", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "oneplan.toml").write_text(CATALOG)
    return {"ONEPLAN_HOME": str(tmp_path / "data"), "ONEPLAN_CONFIG": str(tmp_path / "oneplan.toml")}


def test_users_and_keys_print_keys_alone_on_stdout(home: dict[str, str]) -> None:
    created = oneplan("users", "create", "alice", "--plan", "pro", env=home)
    assert created.returncode == 0, created.stderr
    first = created.stdout.strip()
    assert created.stdout == first + "\n" and first.startswith("sk-op-")
    second = oneplan("keys", "create", "alice", env=home)
    assert second.returncode == 0 and second.stdout.strip().startswith("sk-op-")
    assert second.stdout.strip() != first
    listed = json.loads(oneplan("keys", "list", "alice", "--json", env=home).stdout)
    assert len(listed) == 2 and all(k["user"] == "alice" for k in listed)
    assert all(first not in json.dumps(k) for k in listed)  # only ids and prefixes
    revoked = oneplan("keys", "revoke", listed[0]["id"], env=home)
    assert revoked.returncode == 0
    listed = json.loads(oneplan("keys", "list", "--json", env=home).stdout)
    assert sum(1 for k in listed if k["revoked_at"]) == 1


def test_flags_work_as_well_as_environment(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CATALOG)
    args = ["--config", str(tmp_path / "c.toml"), "--data-dir", str(tmp_path / "d")]
    assert oneplan("users", "create", "bob", "--plan", "pro", *args).returncode == 0
    report = json.loads(oneplan("usage", "--json", "--user", "bob", *args).stdout)
    (user,) = report["users"]
    assert user["user"] == "bob" and user["plan"] == "pro"
    windows = {w["window"]: w for w in user["windows"]}
    assert windows["5h"]["limit"] == 10 and windows["5h"]["used"] == 0
    assert windows["week"]["limit"] == 20


def test_errors_are_one_line_with_the_fix(home: dict[str, str]) -> None:
    bad_plan = oneplan("users", "create", "carol", "--plan", "platinum", env=home)
    assert bad_plan.returncode == 1
    assert bad_plan.stderr.count("\n") == 1 and "no plan named 'platinum'" in bad_plan.stderr
    assert oneplan("users", "create", "carol", "--plan", "pro", env=home).returncode == 0
    again = oneplan("users", "create", "carol", "--plan", "pro", env=home)
    assert again.returncode == 1 and "already exists" in again.stderr
    no_user = oneplan("keys", "create", "nobody", env=home)
    assert no_user.returncode == 1 and "oneplan users create nobody" in no_user.stderr
    assert oneplan("keys", "revoke", "key_nope", env=home).returncode == 1
