"""The provider interface and its registry.

A provider kind is one module that subclasses ``Provider`` and registers itself with
``@register("kind")``. The gateway never branches on a kind's name: it asks the registry.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oneplan.errors import ConfigError
from oneplan.protocols.canonical import ChatRequest, ChatResult, Delta


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``first_token`` bounds the wait for the first byte of the answer, ``idle`` the
    silence between two stream chunks, ``total`` the whole upstream call."""

    connect: float = 10.0
    first_token: float = 120.0
    idle: float = 120.0
    total: float = 900.0


@dataclass(frozen=True, slots=True)
class Preset:
    """What a provider kind knows of itself: where it lives and how it is reached."""

    base_urls: dict[str, str]  # region -> OpenAI-dialect base URL ("default" required)
    anthropic_base_urls: dict[str, str] = field(default_factory=dict)
    env_keys: tuple[str, ...] = ()  # conventional environment variables for the API key
    models: tuple[str, ...] = ()  # current flagship models, enabled with no config file
    small_model: str | None = None  # a small fast model, for claude-haiku-* and the like


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    kind: str
    base_url: str
    api_key: str | None = None
    dialect: str = "openai"  # "openai" | "anthropic" | "responses": what the upstream speaks
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = field(default_factory=dict)
    max_connections: int = 200
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Target:
    """One model on one provider: what the provider needs to call it."""

    model: str  # oneplan's name for it
    upstream: str  # the provider's name for it
    options: dict[str, Any] = field(default_factory=dict)  # the model entry's extra keys


class Provider(ABC):
    """A configured provider account. Two methods; everything else is the kind's business."""

    preset: ClassVar[Preset | None] = None

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.name = settings.name

    @abstractmethod
    async def complete(self, request: ChatRequest, target: Target) -> ChatResult:
        """One whole answer. Raises an ``UpstreamError`` subclass on failure."""

    @abstractmethod
    def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        """The answer chunk by chunk. Raises ``UpstreamError`` (before or mid-stream)."""

    def token_counter(self, target: Target) -> Callable[[str], int] | None:
        """Counts tokens of text exactly as ``target`` does, when that can be done offline
        (a local checkpoint's own tokenizer); None means "estimate"."""
        return None

    def check(self, target: Target) -> None:  # noqa: B027 - optional hook
        """Cheap start-up checks (no network, no loading): raise ``ConfigError`` with a
        one-line fix. ``oneplan serve`` runs them before it starts listening."""

    async def preload(self, target: Target) -> None:  # noqa: B027 - optional hook
        """Get ready to serve ``target`` (load weights...) at start-up, so that a broken
        model fails the start, not the first request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, workers, weights."""


log = logging.getLogger("oneplan.providers")

_REGISTRY: dict[str, type[Provider]] = {}


def register(kind: str) -> Callable[[type[Provider]], type[Provider]]:
    def add(cls: type[Provider]) -> type[Provider]:
        _REGISTRY[kind] = cls
        return cls

    return add


def provider_class(kind: str) -> type[Provider]:
    _load_builtin_kinds()
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown provider kind {kind!r}: use one of {known}") from None


def kinds() -> dict[str, type[Provider]]:
    _load_builtin_kinds()
    return dict(_REGISTRY)


_BUILTIN = (
    "oneplan.providers.openai_compatible",
    "oneplan.providers.anthropic_compatible",
    "oneplan.providers.responses_compatible",
    "oneplan.providers.dashscope",
    "oneplan.providers.zhipu",
    "oneplan.providers.moonshot",
    "oneplan.providers.minimax",
    "oneplan.local.provider",
)
_loaded = False


# Third-party provider kinds: a package declares, in its pyproject.toml,
#     [project.entry-points."oneplan.providers"]
#     acme = "acme_oneplan:AcmeProvider"
# and ``kind = "acme"`` in a catalog finds it (the class is registered under the entry's name).
ENTRY_POINTS = "oneplan.providers"


def _load_builtin_kinds() -> None:
    """Import the built-in kinds once (each registers itself; ``local`` imports no torch
    here), then the installed plug-ins. A plug-in that fails to load is logged and skipped:
    it must not take the gateway down with it."""
    global _loaded
    if _loaded:
        return
    import importlib
    from importlib.metadata import entry_points

    for module in _BUILTIN:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    for entry in entry_points(group=ENTRY_POINTS):
        if entry.name in _REGISTRY:
            log.warning("provider plug-in %r (%s) ignored: a built-in kind has that name", entry.name, entry.value)
            continue
        try:
            cls = entry.load()
        except Exception:
            log.exception("provider plug-in %r (%s) failed to load; skipped", entry.name, entry.value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            log.error("provider plug-in %r (%s) is not a Provider subclass; skipped", entry.name, entry.value)
            continue
        _REGISTRY[entry.name] = cls
    _loaded = True
