"""The real coding-agent CLIs, installed from npm into a cache directory the first time.

``npm install --prefix <cache> <pinned packages>`` runs once; later runs reuse the cache as long
as the installed versions are the pinned ones. The cache is ``tests/e2e/.npm-cache`` unless
``ONEPLAN_E2E_NPM_CACHE`` names another directory. No npm, or a failed install, fails the test
that needs the CLIs: the end-to-end suite never skips silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Pinned: versions these tests were written and verified against (`npm view <pkg> version`).
PINNED = {
    "claude": ("@anthropic-ai/claude-code", "2.1.332"),
    "codex": ("@openai/codex", "0.171.0"),
    "qwen": ("@qwen-code/qwen-code", "0.24.4"),
    # The conformance matrix's other agents (tests/e2e/matrix.py).
    "opencode": ("opencode-ai", "1.18.33"),
    "kilo": ("@kilocode/cli", "7.7.7"),
    "cline": ("cline", "3.0.65"),
    "cn": ("@continuedev/cli", "1.5.47"),
}

DEFAULT_CACHE = Path(__file__).resolve().parent / ".npm-cache"


@dataclass(frozen=True, slots=True)
class Installed:
    cache: Path

    def bin(self, name: str) -> Path:
        return self.cache / "node_modules" / ".bin" / name


def cache_dir() -> Path:
    return Path(os.environ.get("ONEPLAN_E2E_NPM_CACHE") or DEFAULT_CACHE)


def _installed_version(cache: Path, package: str) -> str | None:
    manifest = cache / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _missing(cache: Path) -> list[str]:
    out = []
    for name, (package, version) in PINNED.items():
        if _installed_version(cache, package) != version or not Installed(cache).bin(name).exists():
            out.append(f"{package}@{version}")
    return out


def install() -> Installed:
    """The pinned CLIs, installed into the cache directory if they are not there yet."""
    cache = cache_dir()
    missing = _missing(cache)
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "npm is not on PATH: the end-to-end tests install the real CLIs from npm "
                "(install Node.js 20+ with npm, or point ONEPLAN_E2E_NPM_CACHE at a prepared cache)",
                pytrace=False,
            )
        cache.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--no-update-notifier", *missing]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(command)}` did not finish in 15 minutes (is the npm registry reachable?)", pytrace=False)
        if done.returncode != 0 or _missing(cache):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            pytest.fail(
                f"could not install {', '.join(missing)} from npm into {cache} "
                f"(exit {done.returncode}; is the npm registry reachable?):\n{tail}",
                pytrace=False,
            )
    return Installed(cache)
