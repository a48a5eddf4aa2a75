"""The catalog: presets, cross-references, the environment fallback, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from oneplan.errors import ConfigError
from oneplan.providers.build import build_providers
from oneplan.routing.catalog import load

GOOD = """
[providers.qwen]
kind = "dashscope"
api_key = "env:TEST_DASHSCOPE_KEY"

[models."qwen3.5-plus"]
provider = "qwen"
input_price = 0.8
output_price = 4.8

[models."glm-5"]
provider = "qwen"
upstream = "glm-5-upstream"
weight = 2

[plans.pro]
requests_per_5h = 6000
requests_per_week = 45000
requests_per_month = 90000
models = ["*"]

[plans.lite]
requests_per_5h = 1200
models = ["qwen3.5-plus"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oneplan.toml"
    path.write_text(text)
    return path


def test_a_good_catalog_loads_with_prices_weights_and_plans(tmp_path: Path) -> None:
    catalog = load(write(tmp_path, GOOD))
    model = catalog.resolve("qwen3.5-plus")
    assert model.deployments[0].upstream == "qwen3.5-plus"
    assert catalog.resolve("glm-5").deployments[0].upstream == "glm-5-upstream"
    assert catalog.resolve("glm-5").weight == 2
    assert model.cost(1_000_000, 1_000_000, 0) == pytest.approx(0.8 + 4.8)
    assert catalog.plans["lite"].includes("qwen3.5-plus")
    assert not catalog.plans["lite"].includes("glm-5")
    # Claude Code's default names reach a real model without any configuration.
    assert catalog.resolve("claude-sonnet-4-5-20250929").name == "qwen3.5-plus"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('input_price = 0.8', 'input_price = "cheap"'), 'models.qwen3.5-plus.input_price'),
        (GOOD.replace('provider = "qwen"\ninput', 'provider = "qwne"\ninput'), "no provider named 'qwne'"),
        (GOOD.replace('kind = "dashscope"', 'kind = "dashscop"'), "providers.qwen.kind: unknown kind 'dashscop'"),
        (GOOD.replace("requests_per_5h = 6000", "requests_per_5hours = 6000"), "plans.pro.requests_per_5hours"),
        (GOOD + "\n[models.x\n", "not valid TOML"),
    ],
)
def test_config_errors_are_one_line_naming_file_key_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected in message
    assert "(" in message  # the fix


def test_a_missing_secret_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_DASHSCOPE_KEY", raising=False)
    catalog = load(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="TEST_DASHSCOPE_KEY is not set"):
        build_providers(catalog)
    monkeypatch.setenv("TEST_DASHSCOPE_KEY", "sk-secret")
    providers = build_providers(catalog)
    assert providers["qwen"].settings.api_key == "sk-secret"
    assert providers["qwen"].settings.base_url.startswith("https://")


def test_without_a_file_providers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DASHSCOPE_API_KEY", "ZAI_API_KEY", "ZHIPUAI_API_KEY", "MOONSHOT_API_KEY", "MINIMAX_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-a")
    monkeypatch.setenv("MOONSHOT_API_KEY", "sk-b")
    catalog = load(None)
    assert set(catalog.providers) == {"dashscope", "moonshot"}
    assert "qwen3.5-plus" in catalog.models
    assert "kimi-k3" in catalog.models
    assert "glm-5" not in catalog.models
    plan = catalog.plans["default"]
    assert (plan.requests_per_5h, plan.requests_per_week, plan.requests_per_month) == (6000, 45000, 90000)
