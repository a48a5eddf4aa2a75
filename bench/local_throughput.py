"""Throughput of the local engine: 1 and 8 concurrent streams against sequential ``generate``.

Not a test. Builds a small random checkpoint (or uses ``--checkpoint DIR``), then measures
generated tokens per second for: a plain sequential ``model.generate`` loop over 8 prompts (the
baseline), the engine serving those prompts one at a time, and the engine serving all 8 at once.
End-of-sequence is ignored everywhere so every run generates exactly ``--tokens`` per request.

    python bench/local_throughput.py                      # small random qwen3, CPU
    python bench/local_throughput.py --arch qwen3_5_text --hidden 512 --layers 8
    python bench/local_throughput.py --checkpoint /models/Qwen3-4B --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import torch

from oneplan.local.engine import EngineOptions, LocalEngine
from oneplan.local.tiny import build_checkpoint
from oneplan.protocols.canonical import ChatRequest, Thinking

PROMPTS = [
    "Write a function that reverses a list.",
    "What is the capital of France?",
    "Explain recursion to a child.",
    "List three prime numbers.",
    "Summarise the plot of Hamlet in one sentence.",
    "How do I open a file in Python?",
    "Why is the sky blue?",
    "Translate 'good morning' into German.",
]


def request(prompt: str, tokens: int) -> ChatRequest:
    return ChatRequest(
        model="bench",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=tokens,
        temperature=0,
        thinking=Thinking(enabled=False),
    )


def baseline(engine: LocalEngine, tokens: int) -> float:
    """Tokens/s of a sequential ``model.generate`` loop (greedy, KV cache, EOS ignored)."""
    model, total = engine.model, 0
    inputs = [engine.prepare(request(p, tokens)).ids for p in PROMPTS]
    start = time.perf_counter()
    with torch.inference_mode():
        for ids in inputs:
            tensor = torch.tensor([ids], device=model.device)
            out = model.generate(
                tensor,
                attention_mask=torch.ones_like(tensor),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=engine.scheduler.pad_token_id,
            )
            total += out.shape[1] - tensor.shape[1]
    return total / (time.perf_counter() - start)


async def engine_rate(engine: LocalEngine, tokens: int, concurrent: int) -> float:
    async def one(prompt: str) -> int:
        produced = 0
        async for delta in engine.stream(request(prompt, tokens)):
            if delta.usage is not None:
                produced = delta.usage.output_tokens
        return produced

    start = time.perf_counter()
    total = 0
    for at in range(0, len(PROMPTS), concurrent):
        total += sum(await asyncio.gather(*(one(p) for p in PROMPTS[at : at + concurrent])))
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, help="a real checkpoint directory")
    parser.add_argument("--arch", default="qwen3", help="architecture of the random checkpoint")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or build_checkpoint(
            Path(tmp) / args.arch, args.arch, hidden=args.hidden, layers=args.layers
        )
        engine = LocalEngine.load(
            EngineOptions(path=str(path), device=args.device, dtype=args.dtype, max_batch_size=8)
        )
        engine.stop_token_ids = frozenset()  # ignore EOS: every request makes --tokens tokens
        try:
            asyncio.run(engine_rate(engine, 4, 8))  # warm up
            seq = baseline(engine, args.tokens)
            one = asyncio.run(engine_rate(engine, args.tokens, 1))
            eight = asyncio.run(engine_rate(engine, args.tokens, 8))
        finally:
            engine.close()
    print(
        f"checkpoint: {path if args.checkpoint else f'random {args.arch} hidden={args.hidden} layers={args.layers}'}"
    )
    print(f"device: {engine.model.device} dtype: {engine.model.dtype} tokens/request: {args.tokens}")
    print(f"sequential model.generate : {seq:8.1f} tok/s")
    print(f"engine, 1 stream          : {one:8.1f} tok/s ({one / seq:.2f}x)")
    print(f"engine, 8 streams         : {eight:8.1f} tok/s ({eight / seq:.2f}x)")
    print(f"batch sizes (decode steps): {dict(sorted(engine.scheduler.decode_batch_sizes.items()))}")


if __name__ == "__main__":
    main()
