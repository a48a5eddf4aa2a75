"""Provider dialect tests run on anyio's asyncio backend against ``tests.fakes`` servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# ``tests.fakes`` is imported by package path; until the project's pytest config sets
# ``pythonpath = ["."]`` the repository root has to be put on the path here.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
