"""A third-party provider kind, installed as a package with an ``oneplan.providers`` entry
point, is found by its kind name in the catalog - and a broken plug-in is skipped, logged."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from oneplan.config import CatalogFile
from oneplan.providers import base
from oneplan.providers.build import build_providers
from oneplan.routing.catalog import build

PLUGIN = '''
from oneplan.providers.openai_compatible import OpenAICompatible


class AcmeProvider(OpenAICompatible):
    """A vendor's OpenAI-compatible endpoint with its own quirks."""
'''


def install(site: Path, name: str, entries: str) -> None:
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[oneplan.providers]\n{entries}\n")


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    base.kinds()  # the built-in kinds registered for good, before the registry is swapped
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_loaded", False)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_an_installed_plugin_kind_builds_from_the_catalog(fresh_registry: Path, caplog: pytest.LogCaptureFixture) -> None:
    (fresh_registry / "acme_oneplan.py").write_text(PLUGIN)
    install(fresh_registry, "acme_oneplan", "acme = acme_oneplan:AcmeProvider")
    install(fresh_registry, "broken_oneplan", "broken = no_such_module:Nothing")
    catalog = build(CatalogFile.model_validate(tomllib.loads(
        '[providers.vendor]\nkind = "acme"\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "k"\n'
        '[models."m"]\nprovider = "vendor"\n'
    )), "t.toml")
    providers = build_providers(catalog)
    assert type(providers["vendor"]).__name__ == "AcmeProvider"
    assert "acme" in base.kinds() and "broken" not in base.kinds()
    assert "provider plug-in 'broken'" in caplog.text
    sys.modules.pop("acme_oneplan", None)
