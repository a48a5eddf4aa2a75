"""Providers from the catalog: each ``[providers.NAME]`` resolved to the class that serves its
kind in its dialect, at the URL its preset gives for the region (or its own ``base_url``)."""

from __future__ import annotations

from oneplan.config import resolve_secret
from oneplan.errors import ConfigError
from oneplan.providers.base import Provider, ProviderSettings, Timeouts, provider_class
from oneplan.routing.catalog import Catalog

# A provider whose catalog entry names another dialect is served by that dialect's kind, at
# the URL its own kind's preset gives for the dialect.
DIALECT_KINDS = {"anthropic": "anthropic-compatible", "responses": "responses-compatible"}
NATIVE_DIALECT = {kind: dialect for dialect, kind in DIALECT_KINDS.items()}


def build_providers(catalog: Catalog) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for name, config in catalog.providers.items():
        preset = provider_class(config.kind).preset
        dialect = config.dialect or NATIVE_DIALECT.get(config.kind, "openai")
        cls = provider_class(DIALECT_KINDS.get(dialect, config.kind))
        base_url = config.base_url
        if base_url is None and preset is not None:
            urls = preset.anthropic_base_urls if dialect == "anthropic" and config.kind != "anthropic-compatible" else preset.base_urls
            base_url = urls.get(config.region)
            if base_url is None:
                regions = ", ".join(sorted(urls)) or "none"
                raise ConfigError(
                    f"{catalog.source}: providers.{name}.region: no {config.region!r} {dialect} endpoint for "
                    f"{config.kind} (use one of: {regions}, or set base_url)"
                )
        settings = ProviderSettings(
            name=name,
            kind=config.kind,
            base_url=base_url or "",
            api_key=resolve_secret(config.api_key, f"{catalog.source}: providers.{name}.api_key"),
            dialect=dialect,
            timeouts=Timeouts(**config.timeouts.model_dump()),
            headers=dict(config.headers),
            max_connections=config.max_connections,
            options=config.options,
        )
        providers[name] = cls(settings)
    return providers
