"""A real ``oneplan serve`` process, for the tests that must kill or signal it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.gateway import free_socket


def oneplan_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oneplan.cli.main", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


class ServeProcess:
    def __init__(self, config: Path, data_dir: Path, *extra: str) -> None:
        sock = free_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"ONEPLAN_CONFIG": str(config), "ONEPLAN_HOME": str(data_dir)}
        self.args = ["serve", "--port", str(self.port), "--log-level", "warning", *extra]
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self, timeout: float = 60, ready: str = "/readyz") -> ServeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oneplan.cli.main", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oneplan serve exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                if httpx.get(f"{self.url}{ready}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("oneplan serve did not become ready")
            time.sleep(0.05)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return oneplan_cli(*args, env=self.env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        if self.proc.stdout:
            self.output = self.proc.stdout.read()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
