"""A real ``oneplan serve`` process, for the tests that must kill or signal it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

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
        # The process's output goes to a file, never to a pipe nobody drains: a server that logs
        # more than a pipe holds (64 KiB) would block in its logging call, event loop and all.
        self._log: IO[str] | None = None
        self.log_path: Path | None = None

    def start(self, timeout: float = 60, ready: str = "/readyz") -> ServeProcess:
        fd, name = tempfile.mkstemp(prefix="oneplan-serve-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oneplan.cli.main", *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oneplan serve exited: {self.printed()}")
            try:
                if httpx.get(f"{self.url}{ready}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("oneplan serve did not become ready")
            time.sleep(0.05)

    def printed(self) -> str:
        """What the process has printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path is not None else ""

    def _collect(self) -> None:
        self.output = self.printed()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return oneplan_cli(*args, env=self.env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._collect()

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._collect()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._collect()
