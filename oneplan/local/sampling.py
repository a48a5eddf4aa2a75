"""Per-request sampling: each row of a batch keeps its own temperature, top-p, top-k and seed.

Rows are sampled one by one after one batched forward pass; the forward pass is where the time
goes, and a per-row ``torch.Generator`` is what makes ``seed`` reproducible inside a shared batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

# A logits processor: (tokens generated so far, this row's logits) -> logits.
LogitsProcessor = Callable[[list[int], torch.Tensor], torch.Tensor]


@dataclass(slots=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: frozenset[int] = frozenset()
    processors: list[LogitsProcessor] = field(default_factory=list)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        cut = cumulative - torch.softmax(ordered, dim=-1) >= top_p  # keep the token that crosses
        ordered = ordered.masked_fill(cut, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, ordered)
    return logits


def sample(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    history: Sequence[list[int]],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """One token per row of ``logits`` (``[batch, vocab]``)."""
    logits = logits.float()
    plain = all(p.temperature <= 0 and not p.processors for p in params)
    if plain:
        return [int(t) for t in logits.argmax(dim=-1).tolist()]
    tokens: list[int] = []
    for row, p, past, gen in zip(logits, params, history, generators, strict=True):
        for processor in p.processors:
            row = processor(past, row)
        if p.temperature <= 0:
            tokens.append(int(row.argmax()))
            continue
        row = _filter(row / p.temperature, p.top_k, p.top_p)
        probs = torch.softmax(row, dim=-1)
        tokens.append(int(torch.multinomial(probs, 1, generator=gen)))
    return tokens
