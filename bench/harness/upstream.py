"""Building and starting the fake OpenAI-compatible upstream (bench/upstream/fake_upstream.c).

Why compile at run time: the binary is a build product, not a source file; gcc builds it in a
fraction of a second and the result is cached next to the source (bench/.build, gitignored)
until the source changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from .procs import HarnessError, Managed, Supervisor, wait_http

BENCH_DIR = Path(__file__).resolve().parent.parent
SOURCE = BENCH_DIR / "upstream" / "fake_upstream.c"
BUILD_DIR = BENCH_DIR / ".build"


def build() -> Path:
    """Compile the upstream if the binary is missing or older than its source."""
    binary = BUILD_DIR / "fake_upstream"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise HarnessError("no C compiler: run `apt-get install -y gcc` (as root)")
    BUILD_DIR.mkdir(exist_ok=True)
    proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"building the fake upstream failed:\n{proc.stderr}")
    return binary


def start(sup: Supervisor, port: int, workers: int = 1) -> Managed:
    """Start the upstream on 127.0.0.1:port and wait until it answers /health."""
    managed = sup.start("upstream", [str(build()), str(port), str(workers)])
    wait_http(f"http://127.0.0.1:{port}/health", managed, timeout_s=10)
    return managed


def settled_chat_count(port: int, quiet_s: float = 0.5, max_s: float = 60.0) -> int:
    """The upstream's chat count once it stops moving.

    Why: when wrk stops, a gateway may still forward the requests that were in flight; a count
    read at once would charge them to whatever is measured next (e.g. the quota check).
    """
    last = stats(port)["chat"]
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = stats(port)["chat"]
        if now == last:
            return now
        last = now
    return last


def drain(port: int, quiet_s: float = 0.5, max_s: float = 90.0) -> None:
    """Wait until the upstream has seen no request (chat or stream) for quiet_s.

    Why: when wrk stops, a slow gateway keeps forwarding the requests its closed connections
    left behind (LiteLLM at c=256 holds ~10 s of them); without draining, that backlog would
    eat into the next scenario's window.
    """
    def total() -> int:
        s = stats(port)
        return s["chat"] + s["stream"]

    last = total()
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = total()
        if now == last:
            return
        last = now


def stats(port: int) -> dict[str, int]:
    """How many chat requests the upstream has answered: {"chat": n, "stream": m}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        data: dict[str, int] = json.loads(resp.read())
        return data
