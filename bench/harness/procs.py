"""Starting and always stopping the processes a benchmark run needs.

Why a supervisor: a run starts an upstream, one or two gateways (which fork workers) and many
load-generator processes. A benchmark that leaves a LiteLLM worker holding a port poisons the
next run's numbers, so every process is started in its own session (its own process group) and
the whole group is killed on the way out - on success, on an exception, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType


class HarnessError(RuntimeError):
    """A benchmark step could not run (a process did not start, a tool is missing)."""


@dataclass
class Managed:
    """One started process group: its leader and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        """The end of the process's log, for error messages that say why it died."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    """Owns every process of a run; a context manager that stops them all on exit."""

    log_dir: Path
    procs: list[Managed] = field(default_factory=list)

    def __enter__(self) -> Supervisor:
        atexit.register(self.stop_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_interrupt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Managed:
        """Start argv in a new session with output in <log_dir>/<name>.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
            )
        managed = Managed(name, popen, log_path)
        self.procs.append(managed)
        return managed

    def stop(self, managed: Managed, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after grace_s."""
        if managed in self.procs:
            self.procs.remove(managed)
        _kill_group(managed.popen, grace_s)

    def stop_all(self) -> None:
        while self.procs:
            self.stop(self.procs[-1])


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks run the cleanup."""
    raise KeyboardInterrupt(f"signal {signum}")


def _kill_group(popen: subprocess.Popen[bytes], grace_s: float) -> None:
    pgid = popen.pid  # start_new_session makes the leader's pid the group id
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if popen.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.05)
    try:
        popen.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_http(url: str, managed: Managed, timeout_s: float, ok_statuses: tuple[int, ...] = (200,)
              ) -> None:
    """Poll url until it answers one of ok_statuses; fail fast if the process exits."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if managed.popen.poll() is not None:
            raise HarnessError(
                f"{managed.name} exited with {managed.popen.returncode} before answering {url}:\n"
                f"{managed.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok_statuses:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in ok_statuses:
                return
            last = f"status {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise HarnessError(f"{managed.name} did not answer {url} within {timeout_s:.0f}s ({last}):\n"
                       f"{managed.log_tail()}")
