"""Prefix reuse: the KV of recent sequences, found again by their token ids.

An agent resends its whole history every turn; the previous turn's prompt and answer are already
in some KV cache. Entries here are whole sequences of one tenant (a prompt when its prefill ends,
a prompt and its answer when it finishes), each a copy of its row's keys and values.

Lookup is a block trie kept flat: token ids in blocks of ``BLOCK``, each block keyed by a hash
chained over every block before it (so a key names a whole prefix, as a trie node does). A prompt
walks its own chain one dict look-up per block until no entry shares the next block; the entries
met on the way are then compared token by token for the exact common length.

Hybrid models (Qwen3.5): attention layers' KV can be cut at any length, but a linear-attention
layer's conv and recurrent state exist only for the position where they were taken. An entry of
a hybrid model therefore also keeps snapshots of that state at the positions the scheduler saved
(the prompt's end, the answer's end, a public system prompt's end), and a prompt reuses the
longest snapshot position within what it shares with the entry, never a length in between.

Isolation: entries belong to a tenant (the user), and only that tenant's prompts find them, so
nobody learns from timing what another user sent. Entries under ``PUBLIC`` (a system prompt and
tools, when the operator allows sharing them) are found by everyone.

Memory: bounded by ``budget`` bytes; the least recently used entries go first. An entry that a
newer entry of the same tenant extends is absorbed by it (its snapshots move over), so a session
keeps one entry, not one per turn.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

BLOCK = 32
PUBLIC = "\x00public"

Pair = tuple[torch.Tensor, torch.Tensor]


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _chain(tokens: Sequence[int]) -> list[int]:
    """The chained hash of every whole block of ``tokens``."""
    hashes, h = [], 0
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        h = hash((h, tuple(tokens[start : start + BLOCK])))
        hashes.append(h)
    return hashes


def _bytes(pairs: Iterable[Pair]) -> int:
    return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in pairs)


@dataclass(eq=False, slots=True)
class Entry:
    tenant: str
    tokens: list[int]
    kv: list[Pair]  # per attention layer: [kv_heads, len, head_dim] keys and values
    states: dict[int, list[Pair]] = field(default_factory=dict)  # position -> linear states there
    nbytes: int = 0


@dataclass(slots=True)
class Hit:
    length: int
    kv: list[Pair]
    state: list[Pair] | None  # hybrid models: the linear states at ``length``


class PrefixCache:
    def __init__(self, budget: int, *, hybrid: bool) -> None:
        self.budget = budget
        self.hybrid = hybrid
        self.bytes = 0
        self.evictions = 0
        self._lru: collections.OrderedDict[int, Entry] = collections.OrderedDict()
        self._index: dict[tuple[str, int], set[Entry]] = {}

    def __len__(self) -> int:
        return len(self._lru)

    def _candidates(self, tenant: str, tokens: Sequence[int]) -> set[Entry]:
        found: set[Entry] = set()
        for h in _chain(tokens):
            entries = self._index.get((tenant, h))
            if not entries:
                break
            found |= entries
        return found

    def _usable(self, entry: Entry, common: int) -> int:
        if not self.hybrid:
            return common
        return max((p for p in entry.states if p <= common), default=0)

    def lookup(self, tenants: Sequence[str], prompt: Sequence[int]) -> Hit | None:
        """The longest reusable prefix of ``prompt`` among ``tenants``' entries (at least one
        token of the prompt is always left to prefill: its logits give the first token)."""
        limit = len(prompt) - 1
        best: tuple[int, Entry] | None = None
        for tenant in tenants:
            for entry in self._candidates(tenant, prompt):
                usable = self._usable(entry, min(_common(entry.tokens, prompt), limit))
                if usable > 0 and (best is None or usable > best[0]):
                    best = (usable, entry)
        if best is None:
            return None
        length, entry = best
        self._lru.move_to_end(id(entry))
        return Hit(length, entry.kv, entry.states.get(length) if self.hybrid else None)

    def insert(self, tenant: str, tokens: list[int], kv: list[Pair], states: dict[int, list[Pair]]) -> None:
        """Keep ``tokens``' KV and, for hybrid models, the linear ``states`` saved at positions
        within it."""
        if len(tokens) < BLOCK:
            return
        states = dict(states) if self.hybrid else {}
        for other in self._candidates(tenant, tokens):
            common = _common(other.tokens, tokens)
            if common == len(tokens):  # already held: at most new snapshots for it
                for position, snapshot in states.items():
                    if position not in other.states:
                        other.states[position] = snapshot
                        other.nbytes += _bytes(snapshot)
                        self.bytes += _bytes(snapshot)
                self._lru.move_to_end(id(other))
                self._evict()
                return
            if common == len(other.tokens):  # the new one extends it: absorb it
                for position, snapshot in other.states.items():
                    states.setdefault(position, snapshot)
                self._remove(other)
        entry = Entry(tenant, tokens, kv, states)
        entry.nbytes = _bytes(kv) + sum(_bytes(s) for s in states.values())
        if entry.nbytes > self.budget:
            return
        self._lru[id(entry)] = entry
        for h in _chain(tokens):
            self._index.setdefault((tenant, h), set()).add(entry)
        self.bytes += entry.nbytes
        self._evict()

    def _remove(self, entry: Entry) -> None:
        del self._lru[id(entry)]
        self.bytes -= entry.nbytes
        for h in _chain(entry.tokens):
            key = (entry.tenant, h)
            entries = self._index.get(key)
            if entries is not None:
                entries.discard(entry)
                if not entries:
                    del self._index[key]

    def _evict(self) -> None:
        while self.bytes > self.budget and self._lru:
            _, oldest = next(iter(self._lru.items()))
            self._remove(oldest)
            self.evictions += 1
