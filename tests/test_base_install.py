"""Every CLI command works on the README's plain install (``pip install -e .``, no extras).

A venv with only the base install is built once for this module, from the same constraints file
the README and CI use; each leaf command of the ``oneplan`` group is run from it for real, against
a data directory and a running ``oneplan serve`` started from that venv too. A command added
without an invocation here fails the coverage test, so an import that needs an extra (``httpx``
was one) cannot slip into a command again.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from oneplan.cli.main import cli
from tests.support.gateway import free_socket

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"

CATALOG = """
[providers.fake]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"

[models."m1"]
provider = "fake"

[plans.pro]
requests_per_5h = 10
"""


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


class BaseVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.oneplan = root / "bin" / "oneplan"
        self.ran: set[tuple[str, ...]] = set()

    def run(self, *args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
        # The command path is the leading words that name a command (options follow them).
        self.ran.add(tuple(a for a in args[:2] if not a.startswith("-")))
        clean = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
        done = subprocess.run(
            [str(self.oneplan), *args], capture_output=True, text=True, timeout=120,
            env={**clean, **env}, cwd=self.root,
        )
        if ok:
            assert done.returncode == 0, f"oneplan {' '.join(args)}: {done.stderr}"
        return done


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseVenv:
    root = tmp_path_factory.mktemp("base-venv")
    venv.create(root, with_pip=True)
    env = BaseVenv(root)
    installed = subprocess.run(
        [str(env.python), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS), "-e", str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # The base install really is the base install: no extra's packages came along.
    missing = subprocess.run(
        [str(env.python), "-c", "import importlib.util as u; print([m for m in "
         "('httpx', 'torch', 'transformers', 'psycopg', 'aiohttp') if u.find_spec(m)])"],
        capture_output=True, text=True, timeout=60,
    )
    assert missing.stdout.strip() == "[]", missing.stdout
    return env


def test_every_command_runs_on_the_base_install(base: BaseVenv, tmp_path: Path) -> None:
    (tmp_path / "oneplan.toml").write_text(CATALOG)
    home = {"ONEPLAN_HOME": str(tmp_path / "data"), "ONEPLAN_CONFIG": str(tmp_path / "oneplan.toml")}

    key = base.run("users", "create", "alice", "--plan", "pro", env=home).stdout.strip()
    assert key.startswith("sk-op-")
    assert "alice" in base.run("users", "list", env=home).stdout
    base.run("users", "set-plan", "alice", "--plan", "pro", env=home)
    base.run("users", "set-subscribed", "alice", "2026-01-31", env=home)
    base.run("plans", "create", "lite", "--spec", '{"requests_per_5h": 2}', env=home)
    base.run("plans", "set", "lite", "requests_per_week=20", env=home)
    assert "lite" in base.run("plans", "list", env=home).stdout
    shown = json.loads(base.run("plans", "show", "lite", "--json", env=home).stdout)
    assert shown["source"] == "runtime" and shown["spec"] == {"requests_per_5h": 2, "requests_per_week": 20}
    base.run("plans", "delete", "lite", env=home)
    second = base.run("keys", "create", "alice", "--expires-in-days", "1", env=home).stdout.strip()
    assert second.startswith("sk-op-")
    keys = json.loads(base.run("keys", "list", "--json", env=home).stdout)
    base.run("keys", "revoke", keys[0]["id"], env=home)
    report = json.loads(base.run("usage", "--json", env=home).stdout)
    assert [u["user"] for u in report["users"]] == ["alice"]
    ledger = json.loads(base.run("ledger", "status", "--json", env=home).stdout)
    assert ledger["set_aside_rows"] == 0
    assert base.run("alerts", "status", env=home).stdout.startswith("deliveries: 0 pending, 0 failed")
    digest = base.run("insights", "preview", "--user", "alice", env=home).stdout
    assert digest.startswith("oneplan weekly insights for alice") and "Requests: 0" in digest

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen(
        [str(base.oneplan), "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **home},
    )
    base.ran.add(("serve",))
    try:
        admin_key = _admin_key(server, f"http://127.0.0.1:{port}")
        status = base.run(
            "providers", "status", "--url", f"http://127.0.0.1:{port}", "--admin-key", admin_key, env=home
        )
        assert "fake" in status.stdout
        refused = base.run(
            "providers", "status", "--url", f"http://127.0.0.1:{port}", "--admin-key", "wrong", env=home, ok=False
        )
        assert refused.returncode == 1 and "refused the admin key" in refused.stderr
        line = base.run("statusline", env={**home, "ONEPLAN_URL": f"http://127.0.0.1:{port}", "ONEPLAN_API_KEY": second})
        assert line.stdout.count("\n") == 1 and line.stdout.startswith("oneplan pro · 5h 0/10 · 10 left"), line.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/console/sign-in", timeout=10) as page:
            assert b'action="/console/sign-in"' in page.read()  # the console needs no extra
    finally:
        server.kill()
        server.wait(timeout=30)
    nobody = base.run("providers", "status", "--url", f"http://127.0.0.1:{port}", "--admin-key", "k", env=home, ok=False)
    assert nobody.returncode == 1 and "no oneplan server answers" in nobody.stderr
    assert "Traceback" not in nobody.stderr

    untested = set(leaf_commands(cli)) - base.ran
    assert not untested, f"add a base-install invocation for: {sorted(untested)}"


def _admin_key(server: subprocess.Popen[str], url: str) -> str:
    """Read the first-start banner until the admin key appears and the server answers."""
    assert server.stdout is not None
    fd = server.stdout.fileno()
    os.set_blocking(fd, False)
    text, key = "", None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited on the base install: {text}{server.stdout.read()}")
        if select.select([fd], [], [], 0.2)[0]:
            text += os.read(fd, 65536).decode()
        found = re.search(r"sk-op-admin-\S+", text)
        key = found.group(0) if found else key
        if key:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
                    if reply.status == 200:
                        return key
            except OSError:
                pass
    raise AssertionError(f"no admin key and no answer from the base-install serve: {text}")

