"""The prefix cache on its own: longest prefix per tenant, snapshots on hybrid models, a session
kept as one entry, and the least recently used entry evicted first."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from oneplan.local.prefix import BLOCK, PUBLIC, PrefixCache  # noqa: E402


def kv(length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(2, length, 4), torch.zeros(2, length, 4))]  # 64 bytes a token


def state() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(4), torch.zeros(4))]


def test_the_longest_prefix_of_the_same_tenant_only() -> None:
    cache = PrefixCache(10**6, hybrid=False)
    tokens = list(range(3 * BLOCK))
    cache.insert("alice", tokens, kv(len(tokens)), {})
    hit = cache.lookup(["alice"], [*tokens[:2 * BLOCK + 5], 999, 998])
    assert hit is not None and hit.length == 2 * BLOCK + 5
    assert cache.lookup(["bob"], [*tokens, 7]) is None
    assert cache.lookup(["bob", PUBLIC], [*tokens, 7]) is None
    full = cache.lookup(["alice"], tokens)
    assert full is not None and full.length == len(tokens) - 1  # one token is always left to run


def test_hybrid_prefixes_stop_only_where_a_state_was_saved() -> None:
    cache = PrefixCache(10**6, hybrid=True)
    tokens = list(range(4 * BLOCK))
    cache.insert("alice", tokens, kv(len(tokens)), {BLOCK + 3: state(), len(tokens): state()})
    hit = cache.lookup(["alice"], [*tokens[:3 * BLOCK], 999])
    assert hit is not None and hit.length == BLOCK + 3 and hit.state is not None
    hit = cache.lookup(["alice"], [*tokens, 5])
    assert hit is not None and hit.length == len(tokens)


def test_a_session_is_one_entry_and_the_oldest_goes_first() -> None:
    per_token = 64
    cache = PrefixCache(per_token * 5 * BLOCK, hybrid=True)
    turn1 = list(range(2 * BLOCK))
    turn2 = [*turn1, *range(1000, 1000 + BLOCK)]
    cache.insert("alice", turn1, kv(len(turn1)), {len(turn1): state()})
    cache.insert("alice", turn2, kv(len(turn2)), {len(turn2): state()})
    assert len(cache) == 1  # turn 2 absorbed turn 1, and kept its snapshot
    hit = cache.lookup(["alice"], [*turn1, 5])
    assert hit is not None and hit.length == len(turn1)
    other = list(range(5000, 5000 + 2 * BLOCK))
    cache.insert("bob", other, kv(len(other)), {len(other): state()})
    assert cache.evictions == 1 and cache.bytes <= cache.budget
    assert cache.lookup(["alice"], [*turn2, 5]) is None  # the least recently used went
    assert cache.lookup(["bob"], [*other, 5]) is not None


def test_the_catalog_options_are_checked() -> None:
    from oneplan.errors import ConfigError
    from oneplan.local.provider import engine_options

    options = engine_options("m", {"path": "/m", "prefix_cache_mb": 64, "prefill_chunk": 128, "share_prefix": "system"})
    assert (options.prefix_cache_mb, options.prefill_chunk, options.share_prefix) == (64, 128, "system")
    assert engine_options("m", {"path": "/m"}).share_prefix == "none"
    assert engine_options("m", {"path": "/m"}).idle_prefill_chunk == 2048
    assert engine_options("m", {"path": "/m", "idle_prefill_chunk": 512}).idle_prefill_chunk == 512
    with pytest.raises(ConfigError, match="idle_prefill_chunk must be a positive integer"):
        engine_options("m", {"path": "/m", "idle_prefill_chunk": 0})
    with pytest.raises(ConfigError, match='share_prefix must be "none" or "system"'):
        engine_options("m", {"path": "/m", "share_prefix": "all"})
    with pytest.raises(ConfigError, match="prefix_cache_mb must be a number >= 0"):
        engine_options("m", {"path": "/m", "prefix_cache_mb": -1})
