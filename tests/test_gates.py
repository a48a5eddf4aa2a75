"""The gates stay wired: CI runs the static checks ``scripts/check`` runs, every declared
dependency is pinned, and the dead-code whitelist names nothing that is gone."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC_GATES = ("ruff", "mypy", "vulture")


def commands(script: Path) -> list[str]:
    return [line.strip() for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_the_static_gates_of_scripts_check_after_the_readme_command() -> None:
    check = [c for c in commands(ROOT / "scripts" / "check") if c.split()[0] in STATIC_GATES]
    assert [c.split()[0] for c in check] == list(STATIC_GATES)
    ci = commands(ROOT / ".ci" / "run")
    readme = next(i for i, c in enumerate(ci) if "pip install -e '.[test]' -c constraints.txt && pytest" in c)
    assert "pip install -e '.[test]' -c constraints.txt && pytest" in (ROOT / "README.md").read_text()
    for gate in check:
        assert gate in ci[readme + 1 :], f".ci/run does not run {gate!r} after the test command"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]).lower()


def test_every_declared_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra if not r.startswith("oneplan")}
    pinned = {
        _name(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line and not line.startswith("#")
    }
    assert declared - pinned == set()


def test_the_vulture_whitelist_names_only_what_exists() -> None:
    names = re.findall(r"^_\.(\w+)", (ROOT / "scripts" / "vulture_whitelist.py").read_text(), re.MULTILINE)
    assert names
    source = "\n".join(p.read_text() for p in (ROOT / "oneplan").rglob("*.py"))
    gone = [n for n in names if not re.search(rf"\b{n}\b", source)]
    assert gone == [], f"delete these from scripts/vulture_whitelist.py: {gone}"
