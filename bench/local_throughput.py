"""The local engine against transformers on the same checkpoint: throughput, agent sessions, and a
long prompt arriving while others stream.

Not a test. Builds a random Qwen3 checkpoint of the shapes given (or uses ``--checkpoint DIR``) and
runs three scenarios, writing a Markdown table to ``bench/results/local-<stamp>.md``:

1. **8 streams**: tokens/s of the engine (1 and 8 concurrent streams) beside transformers'
   sequential ``generate``, a padded ``generate`` batch of 8, and transformers' continuous batching
   (``generate_batch``, where it runs). End-of-sequence is ignored: every request makes
   ``--tokens`` tokens.
2. **Agent session**: 6 turns, each resending the whole history plus a new user message; time to
   first token per turn with the prefix cache, without it, with ``generate`` (which re-prefills
   everything), and the time a bare forward pass takes to prefill only the new tokens (the floor).
3. **Long prompt while seven stream**: seven requests are decoding when a ``--long``-token prompt
   arrives; the longest gap between two tokens of a running stream while it prefills, with chunked
   prefill and with chunking off, beside the time of one chunk's forward pass.

    python bench/local_throughput.py                      # the default (small) random qwen3
    python bench/local_throughput.py --hidden 1024 --layers 28 --heads 16 --kv-heads 8 \\
        --head-dim 128 --intermediate 3072                # Qwen3-0.6B's shapes (slow on CPU)
    python bench/local_throughput.py --checkpoint /models/Qwen3-0.6B
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from oneplan.local.engine import EngineOptions, LocalEngine
from oneplan.local.sampling import SamplingParams
from oneplan.local.scheduler import Sequence
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
FILLER = "def handler(request): return json.dumps({'status': 'ok', 'items': items[:10]}) # "


def build(directory: Path, args: argparse.Namespace) -> Path:
    """A random Qwen3 of the requested shapes, with the tiny test tokenizer and chat template."""
    import transformers as tf

    from oneplan.local.tiny import build_tokenizer

    tokenizer = build_tokenizer("json")
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    config = tf.Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim,
        max_position_embeddings=8192,
        eos_token_id=eos,
        pad_token_id=eos[-1],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    tf.GenerationConfig(eos_token_id=eos, pad_token_id=eos[-1], do_sample=False).save_pretrained(directory)  # type: ignore[no-untyped-call]
    return directory


def chat(messages: list[dict[str, str]], tokens: int, tenant: str = "") -> ChatRequest:
    return ChatRequest(
        model="bench", messages=messages, max_tokens=tokens, temperature=0,
        thinking=Thinking(enabled=False), tenant=tenant,
    )


def ask(prompt: str, tokens: int, tenant: str = "") -> ChatRequest:
    return chat([{"role": "user", "content": prompt}], tokens, tenant)


def text_of(engine: LocalEngine, tokens: int) -> str:
    """Filler text of about ``tokens`` tokens."""
    per = len(engine.tokenizer.encode(FILLER, add_special_tokens=False))
    return FILLER * max(1, tokens // per)


# -- 1. eight streams ---------------------------------------------------------------------------


def stock_model(path: Path) -> Any:
    """The checkpoint as transformers loads it: the baselines' model (the engine packs the linear
    layers of its own copy, ``oneplan/local/packing.py``)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def generate_rate(engine: LocalEngine, model: Any, tokens: int, batch: int) -> float:
    """Tokens/s of ``model.generate`` (greedy, EOS ignored) over PROMPTS, ``batch`` at a time."""
    total = 0
    inputs = [engine.prepare(ask(p, tokens)).ids for p in PROMPTS]
    pad = engine.scheduler.pad_token_id
    start = time.perf_counter()
    with torch.inference_mode():
        for at in range(0, len(inputs), batch):
            group = inputs[at : at + batch]
            width = max(map(len, group))
            ids = torch.tensor([[pad] * (width - len(g)) + g for g in group], device=model.device)
            mask = torch.tensor([[0] * (width - len(g)) + [1] * len(g) for g in group], device=model.device)
            out = model.generate(
                ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                do_sample=False, pad_token_id=pad,
            )
            total += (out.shape[1] - width) * len(group)
    return total / (time.perf_counter() - start)


def continuous_batching_rate(path: Path, engine: LocalEngine, tokens: int) -> tuple[float | None, str]:
    """transformers' own continuous batching (``generate_batch``) on a fresh copy of the model."""
    try:
        from transformers import AutoModelForCausalLM, GenerationConfig

        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        model.eval()
        inputs = [engine.prepare(ask(p, tokens)).ids for p in PROMPTS]
        config = GenerationConfig(
            max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, eos_token_id=-1,
            pad_token_id=engine.scheduler.pad_token_id,
        )
        with torch.inference_mode():
            model.generate_batch(inputs[:2], generation_config=config)  # warm up
            start = time.perf_counter()
            out = model.generate_batch(inputs, generation_config=config)
            elapsed = time.perf_counter() - start
        made = sum(len(r.generated_tokens) for r in out.values())
        return made / elapsed, ""
    except Exception as exc:  # it does not run everywhere: say why
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"


async def engine_rate(engine: LocalEngine, tokens: int, concurrent: int) -> tuple[float, list[float]]:
    """Tokens/s of the engine, and each request's time to first token."""
    firsts: list[float] = []

    async def one(prompt: str, start: float) -> int:
        produced, first = 0, None
        async for delta in engine.stream(ask(prompt, tokens, tenant=f"{start}-{prompt}")):  # no reuse
            if first is None:
                first = time.perf_counter() - start
            if delta.usage is not None:
                produced = delta.usage.output_tokens
        firsts.append(first or 0.0)
        return produced

    start = time.perf_counter()
    total = 0
    for at in range(0, len(PROMPTS), concurrent):
        t0 = time.perf_counter()
        total += sum(await asyncio.gather(*(one(p, t0) for p in PROMPTS[at : at + concurrent])))
    return total / (time.perf_counter() - start), firsts


# -- 2. agent session -----------------------------------------------------------------------------


class Forced:
    """A logits processor that makes the model answer ``tokens`` then stop (a fixed answer, so
    the history the client resends tokenizes back to exactly what was generated)."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def __call__(self, history: list[int], logits: torch.Tensor) -> torch.Tensor:
        if len(history) >= len(self.tokens):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[self.tokens[len(history)]] = 0.0
        return forced


def ttft(engine: LocalEngine, request: ChatRequest) -> tuple[float, int, int, str]:
    """(time to first token, prompt tokens, cached tokens, answer text) through ``stream``."""

    async def run() -> tuple[float, int, int, str]:
        start, first, text = time.perf_counter(), None, []
        usage = None
        async for delta in engine.stream(request):
            if first is None:
                first = time.perf_counter() - start
            text.append(delta.text or "")
            usage = delta.usage or usage
        assert usage is not None
        return first or 0.0, usage.input_tokens, usage.cached_tokens, "".join(text)

    return asyncio.run(run())


def prefill_new_only(engine: LocalEngine, ids: list[int], cached: int) -> float:
    """Seconds a bare forward pass takes to prefill ``ids[cached:]`` onto a cache of the rest."""
    from transformers import DynamicCache

    from oneplan.local.kvcache import cache_keyword

    model, kw = engine.model, cache_keyword(engine.model)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        if cached:
            model(input_ids=torch.tensor([ids[:cached]]), use_cache=True, logits_to_keep=1, **{kw: cache})
        start = time.perf_counter()
        new = torch.tensor([ids[cached:]])
        positions = torch.arange(cached, len(ids))[None]
        model(input_ids=new, position_ids=positions, use_cache=True, logits_to_keep=1, **{kw: cache})
        return time.perf_counter() - start


def generate_ttft(engine: LocalEngine, model: Any, ids: list[int]) -> float:
    prompt = torch.tensor([ids])
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1, do_sample=False,
            pad_token_id=engine.scheduler.pad_token_id,
        )
    return time.perf_counter() - start


def agent_session(
    engine: LocalEngine, stock: Any, system_tokens: int, turn_tokens: int, answer_tokens: int, tenant: str = "agent",
    baselines: bool = True,
) -> list[dict[str, Any]]:
    """One 6-turn session; per turn the time to first token with the prefix cache and, right after
    it, the floor (so load from others hits both alike). ``baselines``: also without reuse and
    with ``generate``."""
    answer = text_of(engine, answer_tokens)
    forced = Forced(
        [*list(engine.tokenizer.encode(answer, add_special_tokens=False)), engine.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    )
    messages = [{"role": "system", "content": "You are a coding agent. " + text_of(engine, system_tokens)}]
    rows = []
    for turn in range(1, 7):
        messages.append({"role": "user", "content": f"Turn {turn}: fix this. " + text_of(engine, turn_tokens)})
        engine.processors = lambda request: [forced]
        try:
            hot, prompt_tokens, cached, text = ttft(engine, chat(messages, 4 * answer_tokens, tenant=tenant))
        finally:
            engine.processors = None
        ids = engine.prepare(chat(messages, 1)).ids
        row = {"turn": turn, "prompt": prompt_tokens, "cached": cached, "hot": hot,
               "floor": prefill_new_only(engine, ids, cached)}
        if baselines:
            cold, _, cold_cached, _ = ttft(engine, chat(messages, 1, tenant=f"cold-{tenant}-{turn}"))
            assert cold_cached == 0
            row |= {"cold": cold, "generate": generate_ttft(engine, stock, ids)}
        rows.append(row)
        print(f"  turn {turn}: {row}", flush=True)
        messages.append({"role": "assistant", "content": text})
    return rows


# -- 3. a long prompt while seven stream --------------------------------------------------------


def long_prompt(engine: LocalEngine, long_tokens: int, chunk: int, run: int = 0) -> dict[str, float]:
    """Seven streams decode; a long prompt arrives. The running streams' longest gap between two
    tokens while it prefills, and its time to first token."""
    scheduler = engine.scheduler
    scheduler.options = dataclasses.replace(scheduler.options, prefill_chunk=chunk)
    stamps: dict[int, list[float]] = {i: [] for i in range(8)}
    first_long = threading.Event()

    def sink_for(i: int) -> Callable[[tuple[str, Any]], None]:
        def sink(event: tuple[str, Any]) -> None:
            if event[0] == "token":
                stamps[i].append(time.perf_counter())
                if i == 7:
                    first_long.set()

        return sink

    quiet = frozenset[int]()
    streams = [
        Sequence(engine.prepare(ask(PROMPTS[i], 8)).ids, SamplingParams(max_new_tokens=100000, stop_token_ids=quiet),
                 sink_for(i), tenant=f"s{i}-{chunk}-{run}")
        for i in range(7)
    ]
    for seq in streams:
        scheduler.submit(seq)
    scheduler.wait_until(lambda s: all(len(stamps[i]) >= 3 for i in range(7)), 120)
    ids = engine.prepare(ask(text_of(engine, long_tokens), 1)).ids
    long = Sequence(ids, SamplingParams(max_new_tokens=1, stop_token_ids=quiet), sink_for(7), tenant=f"long-{chunk}-{run}")  # nothing to reuse
    arrived = time.perf_counter()
    scheduler.submit(long)
    first_long.wait(600)
    until = stamps[7][0]
    for _ in range(2):  # and two more tokens each after it
        scheduler.wait_until(lambda s, after=until: all(stamps[i][-1] > after for i in range(7)), 60)
        until = max(stamps[i][-1] for i in range(7))
    for seq in streams:
        seq.cancel()
    scheduler.wait_until(lambda s: s.idle(), 60)
    gaps = []
    for i in range(7):
        times = [t for t in stamps[i] if t >= arrived - 1.0]
        gaps += [b - a for a, b in itertools.pairwise(times) if b > arrived]
    return {"ttft": stamps[7][0] - arrived, "gap": max(gaps), "prompt": len(ids)}


def chunk_time(engine: LocalEngine, long_tokens: int, chunk: int) -> float:
    """One chunk's forward pass at the end of a ``long_tokens`` prompt (the slowest chunk)."""
    ids = engine.prepare(ask(text_of(engine, long_tokens), 1)).ids
    return prefill_new_only(engine, ids, max(0, len(ids) - chunk))


# -- the report -----------------------------------------------------------------------------------


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """Median, and the range in brackets."""
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a real checkpoint directory")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=48, help="tokens generated per request (scenario 1)")
    parser.add_argument("--long", type=int, default=3000, help="tokens of the long prompt (scenario 3)")
    parser.add_argument("--chunk", type=int, default=256, help="prefill chunk")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each scenario (medians reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--streams-only", action="store_true",
                        help="scenario 1 only (for large shapes, where 2 and 3 take an hour)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    started, load_before = datetime.now(UTC), load()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint or build(Path(tmp) / "qwen3", args)
        engine = LocalEngine.load(EngineOptions(path=str(path), max_batch_size=8, prefill_chunk=args.chunk))
        engine.stop_token_ids = frozenset()  # ignore EOS: every request makes its tokens
        # The same engine with transformers' own linear layers: what the scheduler alone gives.
        plain = LocalEngine.load(EngineOptions(path=str(path), max_batch_size=8, prefill_chunk=args.chunk,
                                               pack_weights=False))
        plain.stop_token_ids = frozenset()
        stock = stock_model(path)
        try:
            asyncio.run(engine_rate(engine, 4, 8))  # warm up
            asyncio.run(engine_rate(plain, 4, 8))
            generate_rate(engine, stock, 4, 8)
            print("1. eight streams", flush=True)
            seq = generate_rate(engine, stock, args.tokens, 1)
            one, _ = asyncio.run(engine_rate(engine, args.tokens, 1))
            # --repeat pairs, each engine run right after its generate run, so that load from
            # others hits both alike; wall-clock and CPU time (all threads) of each.
            pairs: list[dict[str, float]] = []
            firsts: list[float] = []
            for _ in range(args.repeat):
                c0 = time.process_time()
                padded = generate_rate(engine, stock, args.tokens, 8)
                g_cpu, c0 = time.process_time() - c0, time.process_time()
                rate, firsts = asyncio.run(engine_rate(engine, args.tokens, 8))
                e_cpu = time.process_time() - c0
                unpacked, _ = asyncio.run(engine_rate(plain, args.tokens, 8))
                pairs.append({"padded": padded, "engine": rate, "ratio": rate / padded, "cpu": g_cpu / e_cpu,
                              "plain": unpacked, "plain_ratio": unpacked / padded})
                print(f"  pair: {pairs[-1]} load {load()}", flush=True)
            cb, cb_note = continuous_batching_rate(path, engine, args.tokens)
            engine.stop_token_ids = frozenset(
                [engine.tokenizer.convert_tokens_to_ids("<|im_end|>"), engine.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
            )
            sessions: list[list[dict[str, Any]]] = []
            longs: list[dict[str, float]] = []
            whole: dict[str, float] = {}
            if not args.streams_only:
                print("2. agent session", flush=True)
                sessions = [
                    agent_session(engine, stock, system_tokens=400, turn_tokens=450, answer_tokens=64,
                                  tenant=f"agent-{k}", baselines=k == 0)
                    for k in range(args.repeat)
                ]
                print("3. long prompt while seven stream", flush=True)
            engine.stop_token_ids = frozenset()
            for k in range(0 if args.streams_only else args.repeat):
                run = long_prompt(engine, args.long, args.chunk, run=k)
                run["chunk"] = chunk_time(engine, args.long, args.chunk)
                longs.append(run)
                print(f"  chunked: {run} load {load()}", flush=True)
            if not args.streams_only:
                whole = long_prompt(engine, args.long, 1_000_000)
                whole["chunk"] = chunk_time(engine, args.long, args.chunk)
        finally:
            engine.close()
            plain.close()
    shapes = (
        str(args.checkpoint) if args.checkpoint else
        f"random Qwen3, hidden {args.hidden}, {args.layers} layers, {args.heads} heads / {args.kv_heads} KV heads "
        f"of {args.head_dim}, MLP {args.intermediate}, vocabulary {len(engine.tokenizer)} (the test tokenizer)"
    )
    session = sessions[0] if sessions else []
    ratio8 = [p["ratio"] for p in pairs]
    turn6 = [r[-1]["hot"] / r[-1]["floor"] for r in sessions]
    gaps = [r["gap"] / r["chunk"] for r in longs]
    lines = [
        f"# Local engine benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Checkpoint: {shapes}; {engine.model.dtype}, {engine.model.device}, torch threads "
        f"{torch.get_num_threads()}. Load average {load_before} before, {load()} after (2 cores, shared "
        f"with other work). Every figure is the median of {args.repeat} runs, the range in brackets; "
        "each engine run is paired with its baseline taken right before or after it, and the ratios "
        "are per pair.",
        "",
        "## Targets",
        "",
        "| target | median [range] | met |",
        "|---|---|---|",
        f"| 8 streams: engine / padded `generate` >= 1.20x | {spread(ratio8)}x | "
        f"{'yes' if statistics.median(ratio8) >= 1.2 else 'no'} |",
        *([
            f"| turn 6: time to first token / prefill of only the new tokens <= 1.5x | {spread(turn6)}x | "
            f"{'yes' if statistics.median(turn6) <= 1.5 else 'no'} |",
            f"| longest gap of a running stream / one chunk's prefill <= 2x | {spread(gaps)}x | "
            f"{'yes' if statistics.median(gaps) <= 2 else 'no'} |",
        ] if sessions else []),
        "",
        "## 1. Eight streams",
        "",
        f"{args.tokens} tokens per request, EOS ignored.",
        "",
        "| | tokens/s | vs padded generate |",
        "|---|---|---|",
        f"| transformers `generate`, sequential | {seq:.1f} | |",
        f"| transformers `generate`, padded batch of 8 | {spread([p['padded'] for p in pairs], '{:.1f}')} | 1.00x |",
        "| transformers continuous batching (`generate_batch`) | "
        + (f"{cb:.1f} | |" if cb else f"did not run ({cb_note}) | |"),
        f"| oneplan engine, 1 stream | {one:.1f} | |",
        f"| oneplan engine, 8 streams | {spread([p['engine'] for p in pairs], '{:.1f}')} | "
        f"**{spread(ratio8)}x** (target >= 1.20x) |",
        f"| oneplan engine, 8 streams, `pack_weights = false` (transformers' linear layers) | "
        f"{spread([p['plain'] for p in pairs], '{:.1f}')} | {spread([p['plain_ratio'] for p in pairs])}x |",
        "",
        "Every `generate` row runs the checkpoint as transformers loads it; the engine runs its own copy "
        "with the linear layers packed for oneDNN (`oneplan/local/packing.py`), and the last row is the "
        "engine without that.",
        "",
        f"CPU time (all threads) of padded `generate` / the engine's, per pair: {spread([p['cpu'] for p in pairs])}x. "
        f"Time to first token of the 8 concurrent requests (last run): {min(firsts):.2f} s to {max(firsts):.2f} s.",
        "",
        *([
            "## 2. Agent session (6 turns, the history resent every turn)",
            "",
            "Time to first token, seconds. *floor*: a bare forward pass over only the tokens not reused, "
            f"taken right after each turn. Medians of {args.repeat} sessions; *no reuse* and `generate` from the first.",
            "",
            "| turn | prompt tokens | reused (cached_tokens) | oneplan, prefix cache | floor | oneplan / floor | "
            "oneplan, no reuse | transformers `generate` |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['turn']} | {r['prompt']} | {r['cached']} | "
                f"{spread([x[i]['hot'] for x in sessions], '{:.3f}')} | {spread([x[i]['floor'] for x in sessions], '{:.3f}')} | "
                f"{spread([x[i]['hot'] / x[i]['floor'] for x in sessions])}x | {r['cold']:.3f} | {r['generate']:.3f} |"
                for i, r in enumerate(session)
            ),
            "",
            f"Turn 6: **{spread(turn6)}x** the floor (target <= 1.5x). The first session's prefill time: "
            f"{sum(r['hot'] for r in session):.2f} s with reuse against {sum(r['cold'] for r in session):.2f} s without.",
            "",
            "## 3. A long prompt arrives while seven others stream",
            "",
            f"A {longs[0]['prompt']}-token prompt arrives while 7 requests decode. *one chunk*: a "
            f"{args.chunk}-token forward pass at the prompt's end (the slowest chunk), taken right after each run.",
            "",
            "| | longest gap between tokens of a running stream | one chunk | gap / chunk | long prompt's time to first token |",
            "|---|---|---|---|---|",
            f"| oneplan, chunked prefill ({args.chunk}) | {spread([r['gap'] for r in longs], '{:.3f}')} s | "
            f"{spread([r['chunk'] for r in longs], '{:.3f}')} s | **{spread(gaps)}x** (target <= 2x) | "
            f"{spread([r['ttft'] for r in longs])} s |",
            f"| oneplan, chunking off (one run) | {whole['gap']:.3f} s | {whole['chunk']:.3f} s | "
            f"{whole['gap'] / whole['chunk']:.2f}x | {whole['ttft']:.2f} s |",
            "| transformers `generate` | a running batch cannot take a new request: the seven wait for it "
            "to end, or all eight start over in one padded batch | | | |",
            "",
        ] if sessions else []),
    ]
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"local-{started:%Y%m%d-%H%M%S}.md"
    target.write_text(report, encoding="utf-8")
    print(f"written to {target}")


if __name__ == "__main__":
    main()
