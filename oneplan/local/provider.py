"""Provider kind ``local``: open-weight Qwen checkpoints run in this process.

A model entry names its checkpoint directory (``path``) and optionally ``device``, ``dtype``,
``max_batch_size``, ``context_length``, ``prefill_chunk`` (prompt tokens per prefill step),
``idle_prefill_chunk`` (the same while no stream decodes), ``admission_window_ms``, ``prefix_cache_mb`` (0 turns prefix reuse off), ``share_prefix``
(``"none"``, or ``"system"`` to share a system prompt's cached prefix across users) and
``pack_weights`` (false keeps transformers' own linear layers, ``packing.py``); the
provider's own options give defaults for all its models. Each checkpoint is loaded once, on first use or by ``preload`` at start-up, and shared by
every request for it. torch and transformers are imported only then, so without the ``local``
extra the gateway still runs and a local model fails with a one-line fix.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oneplan.errors import ConfigError, InvalidRequest, UpstreamRejected
from oneplan.protocols.canonical import Accumulator, ChatRequest, ChatResult, Delta
from oneplan.providers.base import Provider, ProviderSettings, Target, register

if TYPE_CHECKING:
    from oneplan.local.engine import EngineOptions, LocalEngine

INSTALL_HINT = "install the local extra: pip install 'oneplan[local]'"


def require_extra(model: str) -> None:
    """Raise the install hint unless torch and transformers import."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"model {model!r} runs locally and needs PyTorch and transformers "
            f"({exc.name or exc} is missing): {INSTALL_HINT}"
        ) from None


def engine_options(model: str, options: dict[str, Any]) -> EngineOptions:
    from oneplan.local.engine import EngineOptions

    path = options.get("path")
    if not path or not isinstance(path, str):
        raise ConfigError(
            f'model {model!r} on a local provider needs path = "/models/..." (the checkpoint directory)'
        )

    def number(key: str) -> int | None:
        value = options.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {model!r}: {key} must be a positive integer, not {value!r}")
        return value

    def non_negative(key: str, default: float) -> float:
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"model {model!r}: {key} must be a number >= 0, not {value!r}")
        return value

    share = options.get("share_prefix", "none")
    if share not in ("none", "system"):
        raise ConfigError(f'model {model!r}: share_prefix must be "none" or "system", not {share!r}')
    pack = options.get("pack_weights", True)
    if not isinstance(pack, bool):
        raise ConfigError(f"model {model!r}: pack_weights must be true or false, not {pack!r}")
    return EngineOptions(
        path=str(Path(path).expanduser().resolve()),
        device=options.get("device"),
        dtype=options.get("dtype"),
        max_batch_size=number("max_batch_size") or 8,
        context_length=number("context_length"),
        prefill_chunk=number("prefill_chunk") or 256,
        idle_prefill_chunk=number("idle_prefill_chunk") or 2048,
        admission_window_ms=float(non_negative("admission_window_ms", 5.0)),
        prefix_cache_mb=float(non_negative("prefix_cache_mb", 512)),
        share_prefix=share,
        pack_weights=pack,
    )


@register("local")
class LocalProvider(Provider):
    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._engines: dict[EngineOptions, LocalEngine] = {}
        self._loading: dict[EngineOptions, asyncio.Lock] = {}

    def token_counter(self, target: Target) -> Callable[[str], int] | None:
        engine = self._engines.get(engine_options(target.model, {**self.settings.options, **target.options}))
        if engine is None:
            return None
        tokenizer = engine.tokenizer
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))

    def check(self, target: Target) -> None:
        """The extra is installed and the directory holds a whole checkpoint (no torch yet)."""
        from oneplan.local.checkpoint import inspect

        require_extra(target.model)
        inspect(engine_options(target.model, {**self.settings.options, **target.options}).path)

    async def engine(self, target: Target) -> LocalEngine:
        """The loaded engine for ``target``'s checkpoint, loading it on first use."""
        require_extra(target.model)
        options = engine_options(target.model, {**self.settings.options, **target.options})
        engine = self._engines.get(options)
        if engine is not None:
            return engine
        lock = self._loading.setdefault(options, asyncio.Lock())
        async with lock:
            engine = self._engines.get(options)
            if engine is None:
                from oneplan.local.engine import LocalEngine

                engine = await asyncio.to_thread(LocalEngine.load, options)
                self._engines[options] = engine
        return engine

    async def preload(self, target: Target) -> None:
        """Load ``target``'s checkpoint now, so a broken one fails the start-up, not a request."""
        await self.engine(target)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Delta]:
        engine = await self.engine(target)
        stream = engine.stream(request)
        try:
            async for delta in stream:
                yield delta
        except InvalidRequest as exc:
            # The router passes on only UpstreamError: a request this model cannot take (too long,
            # images) is the "provider" refusing it, which the gateway renders as a 400.
            raise UpstreamRejected(exc.message, upstream_status=400) from exc
        finally:
            await stream.aclose()

    async def complete(self, request: ChatRequest, target: Target) -> ChatResult:
        acc = Accumulator()
        async for delta in self.stream(request, target):
            acc.add(delta)
        return acc.result(id=f"chatcmpl-{uuid.uuid4().hex}", model=target.model, created=int(time.time()))

    async def aclose(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await asyncio.to_thread(engine.close)
