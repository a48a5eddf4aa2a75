"""Helpers for the local engine tests: scripted output and collecting a stream."""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from oneplan.local.engine import LocalEngine
from oneplan.protocols.canonical import Accumulator, ChatRequest, ChatResult, Delta


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
