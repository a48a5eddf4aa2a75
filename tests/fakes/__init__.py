"""Fake upstream providers for tests: real HTTP servers speaking each provider's dialect.

    from tests.fakes import FakeUpstream
    with FakeUpstream(dialect="dashscope") as up:
        up.reply(text="hi")
        ...

Dialects: ``openai`` (vLLM-like), ``dashscope``, ``zhipu``, ``moonshot``, ``minimax``,
``deepseek``, ``anthropic`` and the presets' Anthropic endpoints (``anthropic-dashscope``,
``anthropic-minimax``, ``anthropic-moonshot``, ``anthropic-zhipu``), ``responses``. Each reports
cache reads and writes the way its provider does; the explicit caches (Anthropic, DashScope,
MiniMax's Anthropic endpoint) honour ``cache_control`` (``tests/fakes/cache.py``). See
``tests/fakes/upstream.py`` for the full scripting API.
"""

from tests.fakes.answers import Answer, Tokens
from tests.fakes.dialect import DIALECTS, Dialect
from tests.fakes.upstream import FAULT_KINDS, FakeUpstream, Fault, Recorded

__all__ = [
    "DIALECTS",
    "FAULT_KINDS",
    "Answer",
    "Dialect",
    "FakeUpstream",
    "Fault",
    "Recorded",
    "Tokens",
]
