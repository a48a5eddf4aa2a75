"""Graceful shutdown of a real ``oneplan serve`` process: SIGTERM while answers are streaming.

The streams in flight finish (up to ``server.shutdown_grace_seconds``), the ledger has them, and
the process exits 0. A stream longer than the grace period is cut, and still recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from oneplan.store.db import Database
from tests.fakes import FakeUpstream
from tests.support.gateway import free_socket

WORDS = " ".join(f"w{i}" for i in range(20))  # 20 pieces at 0.1 s: a two-second answer


def start_server(tmp_path: Path, up: FakeUpstream, grace: float) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    data_dir = tmp_path / "data"
    config = tmp_path / "oneplan.toml"
    config.write_text(
        f"""
[server]
shutdown_grace_seconds = {grace}
ledger_flush_seconds = 5

[providers.qwen]
kind = "dashscope"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."qwen3.5-plus"]
provider = "qwen"

[plans.pro]
models = ["*"]
"""
    )
    db = Database.open(data_dir)
    db.ensure_admin_key()
    _user, _key_id, key = db.create_user("alice", "pro")
    db.close()
    oneplan = Path(sys.executable).parent / "oneplan"
    proc = subprocess.Popen(
        [str(oneplan), "serve", "--config", str(config), "--data-dir", str(data_dir), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # wait for an external process to listen: bounded polling is the only way
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"oneplan serve did not start: {proc.communicate()[0].decode()[-2000:]}")
        time.sleep(0.05)
    return proc, url, key, data_dir


def stream_in_thread(url: str, key: str, started: threading.Event, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)
        text, finish = "", None
        try:
            for chunk in client.chat.completions.create(
                model="qwen3.5-plus", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                started.set()
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
        except Exception as exc:
            out["error"] = exc
        finally:
            started.set()
        out["text"], out["finish"] = text, finish

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_lets_streams_finish_records_them_and_exits_0(tmp_path: Path) -> None:
    with FakeUpstream("dashscope") as up:
        up.fault("drip", delay=0.1, times=2)
        up.reply(WORDS, times=2)
        proc, url, key, data_dir = start_server(tmp_path, up, grace=20)
        try:
            results: list[dict[str, Any]] = [{}, {}]
            events = [threading.Event(), threading.Event()]
            threads = [stream_in_thread(url, key, e, r) for e, r in zip(events, results, strict=True)]
            assert all(e.wait(10) for e in events)
            proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(30)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = proc.communicate()[0].decode()
        assert code == 0, output
        for result in results:
            assert "error" not in result, result
            assert (result["text"], result["finish"]) == (WORDS, "stop")
        db = Database.open(data_dir)
        rows = db.ledger_rows()
        db.close()
        assert [r["status"] for r in rows] == ["ok", "ok"]
        assert sum(r["input_tokens"] + r["output_tokens"] for r in rows) == up.served_tokens.total


def test_a_stream_longer_than_the_grace_period_is_cut_and_still_recorded(tmp_path: Path) -> None:
    with FakeUpstream("dashscope") as up:
        up.fault("drip", delay=0.5)  # ten seconds of answer; one second of grace
        up.reply(WORDS)
        proc, url, key, data_dir = start_server(tmp_path, up, grace=1)
        try:
            result: dict[str, Any] = {}
            started = threading.Event()
            thread = stream_in_thread(url, key, started, result)
            assert started.wait(10)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            thread.join(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0, proc.communicate()[0].decode()
        assert result.get("finish") != "stop"  # cut short, and the client can tell
        db = Database.open(data_dir)
        rows = db.ledger_rows()
        db.close()
        assert len(rows) == 1 and rows[0]["status"] == "cancelled"
        assert up.wait_until(lambda: up.active == 0)
