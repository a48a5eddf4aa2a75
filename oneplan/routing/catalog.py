"""The runtime catalog: what each model name means and which plans exist.

Built from ``oneplan.toml`` or, with no file, from the providers' conventional environment
variables. Checks cross-references (a model naming a missing provider, a plan naming a missing
model) so that every mistake surfaces at start-up as one line.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneplan.alerts.config import AlertsConfig
from oneplan.config import CatalogFile, PlanConfig, ProviderConfig, RoutingConfig, ServerConfig
from oneplan.errors import ConfigError, ModelNotFound
from oneplan.metering.plans import Credits, Plan, plan_from_config
from oneplan.providers.base import kinds

# A default plan shaped like a cloud coding plan's "Pro" tier.
DEFAULT_PLAN = PlanConfig(
    requests_per_5h=6000, requests_per_week=45000, requests_per_month=90000, models=["*"]
)


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: str
    upstream: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    deployments: tuple[Deployment, ...]
    input_price: float = 0.0  # per million tokens
    output_price: float = 0.0
    cached_input_price: float | None = None
    weight: int = 1
    fallbacks: tuple[str, ...] = ()
    context_length: int | None = None
    max_output_tokens: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    credits: Credits = field(default_factory=Credits)

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
        cached_price = self.input_price if self.cached_input_price is None else self.cached_input_price
        fresh = max(0, input_tokens - cached_tokens)
        return (
            fresh * self.input_price + cached_tokens * cached_price + output_tokens * self.output_price
        ) / 1_000_000


@dataclass(slots=True)
class Catalog:
    source: str  # the file, or "environment"
    server: ServerConfig
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelEntry]
    plans: dict[str, Plan]
    aliases: list[tuple[str, str]]  # (pattern, model), first match wins
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    _resolved: dict[str, ModelEntry] = field(default_factory=dict)

    def resolve(self, name: str) -> ModelEntry:
        """A model by its name or an alias of it; ``ModelNotFound`` otherwise."""
        entry = self._resolved.get(name)
        if entry is not None:
            return entry
        entry = self.models.get(name)
        if entry is None:
            for pattern, target in self.aliases:
                if fnmatch.fnmatchcase(name, pattern):
                    entry = self.models[target]
                    break
        if entry is None:
            raise ModelNotFound(f"The model '{name}' does not exist: GET /v1/models lists yours.", param="model")
        if len(self._resolved) < 4096:
            self._resolved[name] = entry
        return entry

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            hint = ""
            if name == "default":
                hint = "the built-in plan 'default' exists only while the file declares no [plans.*]; "
            raise ConfigError(
                f"{self.source}: no plan named {name!r} ({hint}add [plans.{name}] or use one of: "
                f"{', '.join(sorted(self.plans)) or 'none'})"
            ) from None


def _plan(name: str, config: PlanConfig, timezone: str = "UTC") -> Plan:
    return plan_from_config(name, config, timezone)


def build(file: CatalogFile, source: str) -> Catalog:
    known_kinds = kinds()
    for name, provider in file.providers.items():
        if provider.kind not in known_kinds:
            raise ConfigError(
                f"{source}: providers.{name}.kind: unknown kind {provider.kind!r} "
                f"(use one of {', '.join(sorted(known_kinds))})"
            )
    models: dict[str, ModelEntry] = {}
    for name, model in file.models.items():
        refs: list[Any] = list(model.providers) or ([model.provider] if model.provider else [])
        if not refs:
            raise ConfigError(f'{source}: models."{name}": no provider (add provider = "NAME")')
        deployments = []
        for ref in refs:
            provider_name = ref if isinstance(ref, str) else ref.provider
            if provider_name not in file.providers:
                raise ConfigError(
                    f'{source}: models."{name}".provider: no provider named {provider_name!r} '
                    f"(add [providers.{provider_name}] to {source})"
                )
            upstream = (None if isinstance(ref, str) else ref.upstream) or model.upstream or name
            weight = 1.0 if isinstance(ref, str) else ref.weight
            deployments.append(Deployment(provider_name, upstream, weight))
        models[name] = ModelEntry(
            name=name,
            deployments=tuple(deployments),
            input_price=model.input_price,
            output_price=model.output_price,
            cached_input_price=model.cached_input_price,
            weight=model.weight,
            fallbacks=tuple(model.fallbacks),
            context_length=model.context_length,
            max_output_tokens=model.max_output_tokens,
            credits=Credits(**model.credits.model_dump()),
            options=model.options,
        )
    for name, model in file.models.items():
        for fallback in model.fallbacks:
            if fallback not in models:
                raise ConfigError(f'{source}: models."{name}".fallbacks: no model named {fallback!r}')
    aliases: list[tuple[str, str]] = []
    for name, model in file.models.items():
        aliases.extend((alias, name) for alias in model.aliases)
    for pattern, target in file.aliases.items():
        if target not in models:
            raise ConfigError(f'{source}: aliases."{pattern}": no model named {target!r}')
        aliases.append((pattern, target))
    tz = file.server.quota_timezone
    plans = {name: _plan(name, plan, tz) for name, plan in file.plans.items()} or {
        "default": _plan("default", DEFAULT_PLAN, tz)
    }
    file.alerts.check(source, set(plans))
    catalog = Catalog(source, file.server, dict(file.providers), models, plans, aliases, file.routing, file.alerts)
    _add_claude_defaults(catalog)
    return catalog


def _add_claude_defaults(catalog: Catalog) -> None:
    """Claude Code asks for ``claude-*`` names unless told otherwise: unless the operator mapped
    them, send the small fast ones (haiku) to the first small model and the rest to the first
    model, so that Claude Code works out of the box."""
    if not catalog.models or any(p.startswith("claude") for p, _ in catalog.aliases):
        return
    first = next(iter(catalog.models))
    small = first
    presets = {name: kinds()[cfg.kind].preset for name, cfg in catalog.providers.items()}
    for name, entry in catalog.models.items():
        preset = presets.get(entry.deployments[0].provider)
        if preset is not None and preset.small_model == entry.deployments[0].upstream:
            small = name
            break
    catalog.aliases.extend([("claude-*haiku*", small), ("claude-*", first)])


def environment_file(server: ServerConfig | None = None) -> CatalogFile:
    """No config file: one provider per kind whose conventional key variable is set, with its
    flagship models, and a default plan."""
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for kind, cls in sorted(kinds().items()):
        preset = cls.preset
        if preset is None or not preset.env_keys:
            continue
        var = next((v for v in preset.env_keys if os.environ.get(v)), None)
        if var is None:
            continue
        providers[kind] = {"kind": kind, "api_key": f"env:{var}"}
        for model in preset.models:
            models.setdefault(model, {"provider": kind})
    return CatalogFile.model_validate(
        {"server": (server or ServerConfig()).model_dump(), "providers": providers, "models": models}
    )


def with_local_models(file: CatalogFile, paths: list[Path]) -> CatalogFile:
    """``oneplan serve --local-model PATH``: a ``local`` provider and one model per checkpoint
    directory, named after the directory."""
    if not paths:
        return file
    data = file.model_dump()
    data["providers"].setdefault("local", {"kind": "local"})
    for path in paths:
        data["models"].setdefault(path.resolve().name, {"provider": "local", "path": str(path.resolve())})
    return CatalogFile.model_validate(data)


def load(path: Path | None, local_models: list[Path] | None = None) -> Catalog:
    from oneplan.config import load_file

    file = environment_file() if path is None else load_file(path)
    return build(with_local_models(file, local_models or []), "environment" if path is None else str(path))
