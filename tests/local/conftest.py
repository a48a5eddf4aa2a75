"""Tiny random checkpoints of every supported architecture, built once per session.

Random weights produce noise, so tests that need a particular answer (a tool call, a thinking
block) force it with ``helpers.Script``: a logits processor that plays back scripted tokens.
Everything else (loading, templates, scheduling, parsing) is the real code. Without torch the
engine tests skip; the parser tests and the missing-extra test still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from oneplan.local.tiny import ARCHITECTURES, build_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    return {arch: build_checkpoint(root / arch, arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def engines(checkpoints: dict[str, Path]) -> Iterator[dict[str, Any]]:
    from oneplan.local.engine import EngineOptions, LocalEngine

    loaded: list[LocalEngine] = []

    class Lazy(dict[str, LocalEngine]):  # load each architecture once, on first use
        def __missing__(self, arch: str) -> LocalEngine:
            engine = LocalEngine.load(EngineOptions(path=str(checkpoints[arch]), max_batch_size=8))
            loaded.append(engine)
            self[arch] = engine
            return engine

    yield Lazy()
    for engine in loaded:
        engine.close()


@pytest.fixture
def scripted(engines: dict[str, Any]) -> Iterator[Callable[[str, str], Any]]:
    """``scripted(arch, text)`` -> the engine, now answering ``text`` to every request."""
    from tests.local.helpers import Script

    used: list[Any] = []

    def make(arch: str, text: str) -> Any:
        engine = engines[arch]
        script = Script(engine.tokenizer, text)
        engine.processors = lambda request: [script]
        used.append(engine)
        return engine

    yield make
    for engine in used:
        engine.processors = None
