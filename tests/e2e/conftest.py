"""End-to-end tests: the real coding-agent CLIs from npm against a real ``oneplan serve``."""

from __future__ import annotations

import pytest

from tests.e2e.clis import Installed, install


@pytest.fixture(scope="session")
def clis() -> Installed:
    return install()
