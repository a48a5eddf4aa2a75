"""Private virtual environments for the comparison gateway and the chart.

Why separate environments: LiteLLM's proxy extra pulls ~700 MB of pinned dependencies that
would fight oneplan's own; installing it into bench/.venvs/litellm (gitignored) keeps oneplan's
environment exactly what oneplan declares. The environment is reused while its pinned
requirements are unchanged (a marker file records them), so only the first run pays the install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .procs import HarnessError

VENVS_DIR = Path(__file__).resolve().parent.parent / ".venvs"

LITELLM_VERSION = "1.106.0"
LITELLM_REQUIREMENTS = [f"litellm[proxy]=={LITELLM_VERSION}"]
TOOLS_REQUIREMENTS = ["matplotlib==3.11.2"]


def ensure(name: str, requirements: list[str]) -> Path:
    """Create bench/.venvs/<name> with requirements installed; return its bin directory."""
    root = VENVS_DIR / name
    bin_dir = root / "bin"
    marker = root / ".bench-requirements"
    wanted = "\n".join(requirements)
    if marker.exists() and marker.read_text() == wanted:
        return bin_dir
    print(f"[bench] installing {' '.join(requirements)} into {root} (first run only)...",
          flush=True)
    if not (bin_dir / "python").exists():
        _run([sys.executable, "-m", "venv", str(root)], f"creating {root}")
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *requirements],
         f"installing {requirements} (pip needs to reach PyPI)")
    marker.write_text(wanted)
    return bin_dir


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln]
        raise HarnessError(f"{what} failed:\n" + "\n".join(errors[-15:]))
