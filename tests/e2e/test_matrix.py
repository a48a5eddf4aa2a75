"""A few cells of the conformance matrix inside the normal suite (the whole matrix is
``python -m tests.e2e.matrix``, which ``.ci/run`` also runs): agents beyond the three with their
own tests, each on a dialect with a quirk that breaks naive gateways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import matrix
from tests.e2e.clis import Installed
from tests.e2e.writer import WriterUpstream
from tests.support.process import ServeProcess

CELLS = [
    # Kimi K3: reasoning must go back on the tool turn, sampling parameters are refused.
    ("opencode", "moonshot"),
    # GLM-5.3 always thinks: telling it not to is a 400.
    ("kilo", "zhipu"),
    # MiniMax M3: thinking.type adaptive, reasoning in reasoning_details.
    ("continue", "minimax"),
]


@pytest.mark.parametrize(("agent_name", "dialect_name"), CELLS)
def test_matrix_cell(tmp_path: Path, clis: Installed, agent_name: str, dialect_name: str) -> None:
    agent = next(a for a in matrix.AGENTS if a.name == agent_name)
    dialect = next(d for d in matrix.DIALECTS if d.name == dialect_name)
    with WriterUpstream(dialect.fake, str(tmp_path / "work")) as up:
        config = tmp_path / "oneplan.toml"
        config.write_text(matrix.catalog(up, dialect))
        server = ServeProcess(config, tmp_path / "data").start()
        try:
            cell = matrix.run_cell(agent, dialect, clis, up, server, tmp_path / "cell")
        finally:
            server.stop()
    assert cell.ok, cell.why
    assert cell.requests >= 2  # the tool call, then the answer after the tool's result
