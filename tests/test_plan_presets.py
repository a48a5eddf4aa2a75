"""The presets in docs/plans.md are valid catalog TOML that builds the plans they describe."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from oneplan.config import PlanConfig
from oneplan.metering.plans import plan_from_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "plans.md"


def test_every_preset_in_the_docs_builds_its_plan() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    plans = {}
    for block in blocks:
        for name, spec in tomllib.loads(block).get("plans", {}).items():
            plans[name] = plan_from_config(name, PlanConfig.model_validate(spec))
    assert set(plans) == {"alibaba-pro", "glm-pro", "kimi", "minimax-plus"}
    alibaba = {w.name: w for w in plans["alibaba-pro"].limits}
    assert (alibaba["5h"].limit, alibaba["week"].limit, alibaba["month"].limit) == (6000, 45000, 90000)
    assert alibaba["week"].kind == "calendar" and alibaba["month"].kind == "anniversary"
    glm = plans["glm-pro"]
    assert [w.unit for w in glm.limits] == ["credits", "credits"] and glm.off_peak_multiplier == 0.5
    assert plans["kimi"].concurrency == 30
