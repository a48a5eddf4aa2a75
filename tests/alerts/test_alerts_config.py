"""The README's ``[alerts]`` example is a valid catalog; mistakes are one line naming the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from oneplan.alerts.service import Alerts
from oneplan.config import CatalogFile
from oneplan.errors import ConfigError
from oneplan.routing.catalog import build

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = '[providers.p]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n[models.m]\nprovider = "p"\n[plans.pro]\n'


def readme_example() -> str:
    section = README.read_text().split("## Alerts and weekly insights", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def catalog(text: str) -> object:
    return build(CatalogFile.model_validate(tomllib.loads(BASE + text)), "oneplan.toml")


def test_the_readme_example_loads_and_builds_every_channel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("ONEPLAN_WEBHOOK_SECRET", "FEISHU_BOT_SECRET", "SMTP_PASSWORD", "SMS_GATEWAY_TOKEN"):
        monkeypatch.setenv(var, "x")
    cat = catalog(readme_example())
    assert cat.alerts.plans["pro"].thresholds == [50, 80, 100]
    assert [r.event for r in cat.alerts.rules] == ["runaway", "provider"]

    class Bare:  # what Alerts reads of a gateway at construction
        catalog = cat
        clock = staticmethod(lambda: 0.0)
        db = None

    alerts = Alerts(Bare())
    assert sorted(alerts.channels) == ["mail", "ops", "pager", "team"]
    alerts._db.shutdown()


@pytest.mark.parametrize(("text", "message"), [
    ('[alerts]\noperator_channels = ["nope"]', "alerts.operator_channels: no channel named 'nope'"),
    ("[alerts.plans.gold]\nthresholds = [80]", "alerts.plans.gold: no plan named 'gold'"),
    ('[alerts.channels.x]\nkind = "pigeon"', "kind"),
    ("[alerts]\nthresholds = [0]", "thresholds"),
])
def test_mistakes_are_config_errors(text: str, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises((ConfigError, ValidationError), match=re.escape(message)):
        catalog(text)


def test_a_missing_secret_names_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    cat = catalog('[alerts.channels.ops]\nkind = "webhook"\nurl = "http://127.0.0.1:9"\nsecret = "env:NOPE_SECRET"')

    class Bare:
        catalog = cat
        clock = staticmethod(lambda: 0.0)
        db = None

    with pytest.raises(ConfigError, match=r"alerts\.channels\.ops\.secret: environment variable NOPE_SECRET is not set"):
        Alerts(Bare())
