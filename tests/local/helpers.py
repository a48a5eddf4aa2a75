"""Helpers for the local engine tests: scripted output, collecting a stream, the stock model's
greedy reference, and submitting sequences straight to the scheduler."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import torch

from oneplan.local.engine import LocalEngine
from oneplan.local.sampling import SamplingParams
from oneplan.local.scheduler import Sequence
from oneplan.protocols.canonical import Accumulator, ChatRequest, ChatResult, Delta

TOKENS = 10  # tokens a reference answer runs to, unless a test asks for more
_STOCK: dict[str, Any] = {}


def stock_model(path: str | Path) -> Any:
    """The checkpoint as transformers loads it, untouched (the engine packs its own model's
    linear layers, ``packing.py``); loaded once per path."""
    key = str(path)
    if key not in _STOCK:
        from transformers import AutoModelForCausalLM

        _STOCK[key] = AutoModelForCausalLM.from_pretrained(key, local_files_only=True).eval()
    return _STOCK[key]


def reference(engine: LocalEngine, ids: list[int], tokens: int = TOKENS) -> list[int]:
    """transformers' own greedy ``generate`` on the stock model, one prompt at a time, stopping
    where the engine stops."""
    model = stock_model(engine.checkpoint.path)
    prompt = torch.tensor([ids], device=model.device)
    with torch.inference_mode():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=tokens,
            do_sample=False,
            eos_token_id=sorted(engine.stop_token_ids),
            pad_token_id=engine.scheduler.pad_token_id,
        )
    return [int(t) for t in out[0, len(ids) :]]


def run(engine: LocalEngine, prompts: list[tuple[list[int], str]], tokens: int = TOKENS) -> list[Sequence]:
    """Submit every prompt (as ``(ids, tenant)``) at once and wait for all to finish."""
    done = threading.Semaphore(0)

    def sink(event: tuple[str, Any]) -> None:
        if event[0] == "error":
            raise AssertionError(f"generation failed: {event[1]}")
        if event[0] == "done":
            done.release()

    params = SamplingParams(max_new_tokens=tokens, stop_token_ids=engine.stop_token_ids)
    seqs = [Sequence(list(ids), params, sink, tenant=tenant) for ids, tenant in prompts]
    with engine.scheduler.paused():
        for seq in seqs:
            engine.scheduler.submit(seq)
    for _ in seqs:
        assert done.acquire(timeout=60)
    assert engine.scheduler.wait_until(lambda s: s.idle(), 30)
    return seqs


class Script:
    """Forces the model to write ``text`` then ``<|im_end|>``, token by token."""

    def __init__(self, tokenizer: Any, text: str, *, end: bool = True) -> None:
        self.tokens = list(tokenizer.encode(text, add_special_tokens=False))
        if end:
            self.tokens.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))

    def __call__(self, history: list[int], logits: torch.Tensor) -> torch.Tensor:
        if len(history) >= len(self.tokens):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[self.tokens[len(history)]] = 0.0
        return forced


def collect(engine: LocalEngine, request: ChatRequest) -> tuple[list[Delta], ChatResult]:
    async def run() -> list[Delta]:
        return [d async for d in engine.stream(request)]

    deltas = asyncio.run(run())
    acc = Accumulator()
    for delta in deltas:
        acc.add(delta)
    return deltas, acc.result(id="t", model=request.model, created=0)
