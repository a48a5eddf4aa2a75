"""What ``oneplan serve`` says on every start, before uvicorn's lines: which config file was
loaded (or that none was, and which providers came from environment variables), the providers
and models that are on, the plans, and what looks wrong. Secrets are never printed."""

from __future__ import annotations

import os
from pathlib import Path

from oneplan.metering.plans import Plan
from oneplan.providers.base import kinds
from oneplan.routing.catalog import Catalog

_LIMITS = (
    ("requests_per_5h", "/5h"),
    ("requests_per_week", "/week"),
    ("requests_per_month", "/month"),
    ("tokens_per_month", " tokens/month"),
    ("cost_per_month", " cost/month"),
)


_UNIT = {"requests": "", "calls": " calls", "tokens": " tokens", "credits": " credits", "cost": " cost"}


def _plan_line(plan: Plan) -> str:
    limits = [f"{getattr(plan, field):g}{unit}" for field, unit in _LIMITS if getattr(plan, field) is not None]
    shorthand = {"5h", "week", "month", "tokens_month", "cost_month"}
    for w in plan.limits:
        if w.name in shorthand:
            continue
        where = f"/{w.length}" if w.kind != "anniversary" else f"/{w.length} from subscription"
        limits.append(f"{w.limit:g}{_UNIT.get(w.unit, '')}{where}")
    if plan.concurrency is not None:
        limits.append(f"{plan.concurrency} in flight")
    models = "all models" if plan.models == ("*",) else "models " + ", ".join(plan.models)
    return f"{plan.name} ({', '.join(limits) or 'unlimited'}; {models})"


def _provider_line(name: str, catalog: Catalog) -> str:
    config = catalog.providers[name]
    where = config.base_url or (f"region {config.region}" if config.region != "default" else "preset endpoint")
    dialect = f", {config.dialect} dialect" if config.dialect else ""
    key = ""
    if config.api_key and config.api_key.startswith("env:"):
        key = f", key from ${config.api_key[4:]}"
    return f"{name} ({config.kind}, {where}{dialect}{key})"


def problems(catalog: Catalog) -> list[str]:
    """What will not work as the operator probably meant, though serving can start."""
    out = []
    if not catalog.providers:
        out.append(
            "no provider: export DASHSCOPE_API_KEY (or ZAI_API_KEY, MOONSHOT_API_KEY, MINIMAX_API_KEY), "
            "or declare [providers.NAME] in oneplan.toml"
        )
    used = {d.provider for entry in catalog.models.values() for d in entry.deployments}
    for name in catalog.providers:
        if name not in used:
            out.append(f"provider '{name}' serves no model (add [models.\"NAME\"] with provider = \"{name}\")")
    for plan in catalog.plans.values():
        if catalog.models and not any(plan.includes(m) for m in catalog.models):
            out.append(f"plan '{plan.name}' includes none of the models (models = {list(plan.models)})")
    for model in catalog.models:
        if not any(plan.includes(model) for plan in catalog.plans.values()):
            out.append(f"model '{model}' is in no plan: nobody can use it")
    for name, config in catalog.providers.items():
        if config.api_key and config.api_key.startswith("env:") and not os.environ.get(config.api_key[4:]):
            out.append(f"provider '{name}': ${config.api_key[4:]} is not set")
    return out


def summary(catalog: Catalog, config_path: Path | None) -> str:
    if config_path is not None:
        lines = [f"oneplan: config {Path(config_path).resolve()}"]
    else:
        detected = []
        for name, config in catalog.providers.items():
            preset = kinds()[config.kind].preset
            if config.kind != "local" and preset is not None and preset.env_keys:
                detected.append(f"{name} (${(config.api_key or 'env:?')[4:]})")
        lines = [
            "oneplan: no config file (looked for $ONEPLAN_CONFIG, oneplan.toml in the data directory "
            "and in the working directory)",
            "  providers found through environment variables: " + (", ".join(detected) or "none"),
        ]
    lines.append("  providers: " + (", ".join(_provider_line(n, catalog) for n in catalog.providers) or "none"))
    models = []
    for name, entry in catalog.models.items():
        targets = ", ".join(
            d.provider if d.upstream == name else f"{d.provider}:{d.upstream}" for d in entry.deployments
        )
        models.append(f"{name} -> {targets}")
    lines.append("  models: " + ("; ".join(models) or "none"))
    if catalog.aliases:
        lines.append("  aliases: " + ", ".join(f"{p} -> {t}" for p, t in catalog.aliases))
    lines.append("  plans: " + "; ".join(_plan_line(p) for p in catalog.plans.values()))
    found = problems(catalog)
    if found:
        lines.append("  problems:")
        lines += [f"    - {p}" for p in found]
    else:
        lines.append("  problems: none found")
    return "\n".join(lines)
