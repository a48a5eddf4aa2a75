"""Provider dialect tests run on anyio's asyncio backend against ``tests.fakes`` servers."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
