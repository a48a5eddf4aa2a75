"""The other gateways oneplan is measured against, besides LiteLLM: Portkey's gateway,
claude-code-router, and a bare Python proxy as the floor.

Why these: Portkey's gateway and claude-code-router are what people put between Claude Code (or
an OpenAI client) and an OpenAI-compatible upstream; the bare proxy (bench/peers/bare_proxy.py)
is what the same Python stack costs when it does nothing but forward, so it says how far
oneplan's own pipeline is from the limit.

Each runs as one process with its default settings, as a plain proxy to the same fake upstream:
- Portkey (`@portkey-ai/gateway`, Node): told where the upstream is by its own request headers
  (`x-portkey-provider: openai`, `x-portkey-custom-host`); it has no gateway key of its own, the
  Authorization header goes to the upstream. It answers OpenAI chat only: its `/v1/messages`
  refuses an `openai` provider ("messages is not supported by openai").
- claude-code-router (`@musistudio/claude-code-router`, Node): `ccr start` in the foreground with
  HOME pointed at a run directory holding its config.json (the fake upstream as an
  OpenAI-compatible provider, an APIKEY it checks on every request); it serves Anthropic
  Messages only.
- bare: uvicorn + Starlette in oneplan's interpreter, forwarding bytes with a keep-alive pool.

The npm packages are pinned in bench/peers/package.json and package-lock.json and installed with
`npm ci` into bench/peers/node_modules (gitignored), again only when the lock file changes.
Patch: Portkey 1.15.2's range `^1.3.3` for @hono/node-server resolves to 1.19.x, with which every
stream answers 500 "Something went wrong"; its repository's lock file pins 1.13.5, and so does
the `overrides` entry in bench/peers/package.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .gateways import Target
from .procs import HarnessError, Supervisor, free_port, wait_http

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"
NODE_MODULES = PEERS_DIR / "node_modules"
PORTKEY_ENTRY = NODE_MODULES / "@portkey-ai" / "gateway" / "build" / "start-server.js"
CCR_ENTRY = NODE_MODULES / "@musistudio" / "claude-code-router" / "dist" / "cli.js"
CCR_KEY = "sk-bench-ccr"
ANY_STATUS = tuple(range(100, 600))


def versions() -> dict[str, str]:
    """The pinned npm versions, for the report."""
    deps: dict[str, str] = json.loads((PEERS_DIR / "package.json").read_text())["dependencies"]
    return deps


def ensure_node_peers() -> Path:
    """`npm ci` into bench/peers/node_modules unless it already holds this lock file's tree."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise HarnessError("Portkey and claude-code-router need Node 20+: "
                           "run `apt-get install -y nodejs npm`")
    lock = PEERS_DIR / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes() + (PEERS_DIR / "package.json").read_bytes())
    marker = NODE_MODULES / ".bench-lock-sha256"
    if marker.exists() and marker.read_text() == digest.hexdigest():
        return NODE_MODULES
    print(f"[bench] npm ci in {PEERS_DIR} (first run only)...", flush=True)
    # No install scripts: none of the pinned packages needs one, and none should run here.
    proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                          cwd=PEERS_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"npm ci in {PEERS_DIR} failed (npm needs to reach its registry):\n"
                           f"{proc.stderr[-1500:]}")
    marker.write_text(digest.hexdigest())
    return NODE_MODULES


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise HarnessError("node is not installed: run `apt-get install -y nodejs npm`")
    return node


def start_portkey(sup: Supervisor, upstream_port: int) -> Target:
    port = free_port()
    argv = [_node(), str(PORTKEY_ENTRY), f"--port={port}", "--headless"]
    env = {**os.environ, "NODE_ENV": "production"}
    managed = sup.start("portkey", argv, env=env, cwd=PEERS_DIR)
    wait_http(f"http://127.0.0.1:{port}/", managed, timeout_s=60, ok_statuses=ANY_STATUS)
    headers = (("x-portkey-provider", "openai"),
               ("x-portkey-custom-host", f"http://127.0.0.1:{upstream_port}/v1"))
    return Target("portkey", f"http://127.0.0.1:{port}/v1/chat/completions", "Bearer sk-fake",
                  managed, headers=headers)


def start_ccr(sup: Supervisor, upstream_port: int, workdir: Path) -> Target:
    home = workdir / "ccr-home"
    (home / ".claude-code-router").mkdir(parents=True)
    port = free_port()
    config = {
        "APIKEY": CCR_KEY, "HOST": "127.0.0.1", "PORT": port, "LOG": False,
        "LOG_LEVEL": "error", "NON_INTERACTIVE_MODE": True,
        "Providers": [{
            "name": "fake", "api_base_url": f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
            "api_key": "sk-fake", "models": ["bench-model"],
        }],
        "Router": {"default": "fake,bench-model"},
    }
    (home / ".claude-code-router" / "config.json").write_text(json.dumps(config, indent=1))
    env = {**os.environ, "HOME": str(home), "NODE_ENV": "production"}
    managed = sup.start("ccr", [_node(), str(CCR_ENTRY), "start"], env=env, cwd=home)
    wait_http(f"http://127.0.0.1:{port}/", managed, timeout_s=60, ok_statuses=ANY_STATUS)
    return Target("ccr", "", f"Bearer {CCR_KEY}", managed,
                  messages_url=f"http://127.0.0.1:{port}/v1/messages")


def start_bare(sup: Supervisor, python: Path, upstream_port: int) -> Target:
    """bench/peers/bare_proxy.py under uvicorn, in the interpreter oneplan is installed in."""
    port = free_port()
    argv = [str(python), str(PEERS_DIR / "bare_proxy.py"), "--port", str(port),
            "--upstream", f"127.0.0.1:{upstream_port}"]
    managed = sup.start("bare", argv, env=dict(os.environ), cwd=PEERS_DIR)
    wait_http(f"http://127.0.0.1:{port}/health", managed, timeout_s=30)
    return Target("bare", f"http://127.0.0.1:{port}/v1/chat/completions", "Bearer sk-fake",
                  managed)


def python_beside(oneplan_bin: Path | None) -> Path:
    """The interpreter of oneplan's environment (it has uvicorn, Starlette, httptools)."""
    if oneplan_bin is not None and (oneplan_bin.parent / "python").exists():
        return oneplan_bin.parent / "python"
    return Path(sys.executable)
