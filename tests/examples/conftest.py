"""One real ``oneplan serve`` for the example's tests, in front of every kind of model: the
scripted tiny Qwen checkpoints on the local engine (JSON and XML tool calls), a DashScope-dialect
fake and an Anthropic-dialect fake (scripted by ``FakeUpstream.respond`` with the same scripts)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.one_sentence_order.script import Script, answer_for
from oneplan.store.db import Database
from tests.examples.scenarios import sold_out
from tests.fakes import FakeUpstream
from tests.support.process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
LOCAL = {"tiny-order-json": "json", "tiny-order-xml": "xml"}
FAKES = {"qwen3.7-plus": "dashscope", "kimi-k2.5": "anthropic"}


@dataclass
class Stack:
    server: ServeProcess
    fakes: dict[str, FakeUpstream]  # by model name
    admin_key: str
    checkpoints: dict[str, Path]  # the local models' directories

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, self.server.url + path, timeout=30,
                               headers={"authorization": f"Bearer {self.admin_key}"}, **kwargs)
        assert answer.is_success, answer.text
        return answer.json()

    def user(self, name: str) -> str:
        return str(self._admin("POST", "/admin/users", json={"name": name, "plan": "default"})["key"])

    def model_calls(self, user: str) -> dict[str, int]:
        """The ledger's requests per model for ``user`` (the server flushes its ledger first)."""
        (entry,) = self._admin("GET", "/admin/usage", params={"user": user})["users"]
        return {row["model"]: row["requests"] for row in entry["models"]}

    def play(self, script: Script) -> None:
        """Every fake answers by ``script`` from now on."""
        for up in self.fakes.values():
            up.respond(lambda body: answer_for(script, body))


def catalog(checkpoints: dict[str, Path], fakes: dict[str, FakeUpstream]) -> str:
    kinds = {"dashscope": ("dashscope", "openai"), "anthropic": ("anthropic-compatible", "anthropic")}
    parts = ['[providers.local]\nkind = "local"\n']
    for model, path in checkpoints.items():
        parts.append(f'[models."{model}"]\nprovider = "local"\npath = "{path}"\n')
    for model, up in fakes.items():
        kind, dialect = kinds[FAKES[model]]
        parts.append(f'[providers.{FAKES[model]}]\nkind = "{kind}"\ndialect = "{dialect}"\n'
                     f'base_url = "{up.base_url}"\napi_key = "{up.api_key}"\n')
        parts.append(f'[models."{model}"]\nprovider = "{FAKES[model]}"\n')
    parts.append('[plans.default]\nrequests_per_5h = 1000\nmodels = ["*"]\n')
    return "\n".join(parts)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pytest.importorskip("torch")
    from examples.one_sentence_order import scripted

    root = tmp_path_factory.mktemp("example")
    checkpoints = {model: root / model for model in LOCAL}
    for model, style in LOCAL.items():  # the example's own command builds the happy path
        assert scripted.main([str(checkpoints[model]), "--format", style]) == 0
    checkpoints["tiny-sold-out"] = scripted.build_scripted_checkpoint(root / "sold-out", sold_out(), "json")
    fakes = {model: FakeUpstream(dialect=dialect) for model, dialect in FAKES.items()}
    for up in fakes.values():
        up.start()
    config = root / "oneplan.toml"
    config.write_text(catalog(checkpoints, fakes))
    database = Database.open(root / "data")
    admin_key = database.ensure_admin_key()
    database.close()
    assert admin_key
    server = ServeProcess(config, root / "data")
    try:
        server.start(timeout=120)
        yield Stack(server, fakes, admin_key, checkpoints)
    finally:
        server.stop()
        for up in fakes.values():
            up.stop()


@dataclass
class Run:
    code: int
    out: str
    err: str


def agent(key: str, server: ServeProcess, db: Path, *args: str, stdin: str = "") -> Run:
    """``python -m examples.one_sentence_order`` as a user runs it."""
    env = {**os.environ, "ONEPLAN_URL": server.url, "ONEPLAN_API_KEY": key, "ONEPLAN_SHOP_DB": str(db)}
    done = subprocess.run([sys.executable, "-m", "examples.one_sentence_order", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def agent_in_process(key: str, server: ServeProcess, db: Path, *args: str, stdin: str = "") -> Run:
    """The same command's ``main`` in this process (the SDKs' imports cost seconds per process)."""
    from examples.one_sentence_order.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["--base-url", server.url, "--api-key", key, "--db", str(db), *args]
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = saved
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
def run(stack: Stack, tmp_path: Path) -> Callable[..., Run]:
    """Run the example for a key: in this process, or with ``process=True`` as a command."""

    def go(key: str, *args: str, stdin: str = "", process: bool = False) -> Run:
        how = agent if process else agent_in_process
        return how(key, stack.server, tmp_path / "shop.db", *args, stdin=stdin)

    return go


def orders(db: Path) -> list[dict[str, Any]]:
    import sqlite3

    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM orders ORDER BY created_at")]
    finally:
        con.close()
