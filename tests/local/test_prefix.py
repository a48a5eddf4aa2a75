"""Prefix reuse and chunked prefill: answers stay exactly transformers' greedy ``generate``, the
reused part is reported as ``cached_tokens``, tenants stay apart, eviction costs nothing but
time, and a long prompt's prefill lets running streams keep producing tokens."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from oneplan.local.engine import EngineOptions, LocalEngine
from oneplan.local.kvcache import ZERO_AHEAD
from oneplan.local.prefix import PUBLIC
from oneplan.local.sampling import SamplingParams
from oneplan.local.scheduler import Sequence
from oneplan.protocols.canonical import ChatRequest
from tests.local.helpers import TOKENS, Script, collect, reference, run

ARCHS = ["qwen2", "qwen3", "qwen3_moe", "qwen3_5"]


@pytest.fixture(scope="module")
def chunked(checkpoints: dict[str, Path]) -> Iterator[Any]:
    """``chunked(arch, **options)``: an engine with small prefill chunks (so prompts take
    several), a wide admission window, and the prefix cache on; loaded once per setting."""
    loaded: dict[tuple[Any, ...], LocalEngine] = {}

    def make(arch: str, **options: Any) -> LocalEngine:
        key = (arch, *sorted(options.items()))
        if key not in loaded:
            settings = {"prefill_chunk": 32, "idle_prefill_chunk": 32, "admission_window_ms": 50.0, **options}
            loaded[key] = LocalEngine.load(EngineOptions(path=str(checkpoints[arch]), **settings))
        return loaded[key]

    yield make
    for engine in loaded.values():
        engine.close()


def ids_of(engine: LocalEngine, text: str, system: str | None = None) -> list[int]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return engine.prepare(ChatRequest(model="t", messages=messages)).ids


FOLLOW_UP = "\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_equals_generate_alone_batched_and_reusing_a_prefix(chunked: Any, arch: str) -> None:
    engine = chunked(arch)
    prompts = [ids_of(engine, f"Question {i}: " + "tell me why " * (6 * i + 1)) for i in range(4)]
    assert max(map(len, prompts)) > 3 * 32  # several chunks each
    expected = [reference(engine, ids) for ids in prompts]

    alone = [run(engine, [(ids, f"{arch}-alone-{i}")])[0] for i, ids in enumerate(prompts)]
    assert [s.generated for s in alone] == expected
    assert all(s.cached == 0 for s in alone)

    before = engine.scheduler.prefill_batch_sizes.copy()
    batched = run(engine, [(ids, f"{arch}-user-{i}") for i, ids in enumerate(prompts)])
    assert [s.generated for s in batched] == expected
    assert (engine.scheduler.prefill_batch_sizes - before)[4] == 1  # one shared prefill

    # Second turns: the history (prompt and answer) resent with a follow-up question.
    follow = engine.tokenizer.encode(FOLLOW_UP, add_special_tokens=False)
    turns = [s.prompt + s.generated + follow for s in batched]
    again = run(engine, [(ids, f"{arch}-user-{i}") for i, ids in enumerate(turns)])
    assert [s.generated for s in again] == [reference(engine, ids) for ids in turns]
    # What the first turn left: its prompt and answer, but the last answer token (never fed).
    assert [s.cached for s in again] == [len(s.prompt) + len(s.generated) - 1 for s in batched]


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_second_turn_reports_cached_tokens(chunked: Any, arch: str) -> None:
    engine = chunked(arch)
    answer = "Sure, here it is."
    script = Script(engine.tokenizer, answer)
    engine.processors = lambda request: [script]
    try:
        first = [{"role": "user", "content": "Write a haiku about rivers, please " * 4}]
        turn1 = ChatRequest(model="t", messages=first, tenant="alice")
        _, result1 = collect(engine, turn1)
        assert answer in (result1.text, result1.reasoning) and result1.usage.cached_tokens == 0
        history = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "Another."}]
        turn2 = ChatRequest(model="t", messages=history, tenant="alice")
        _, result2 = collect(engine, turn2)
    finally:
        engine.processors = None
    ids1, ids2 = engine.prepare(turn1), engine.prepare(turn2)
    if engine.scheduler.slots.hybrid:
        # A recurrent state is reusable only where it was saved: where turn 1's history ended
        # (the template renders the answer differently from how it was generated).
        start = ids1.prompt.rfind("<|im_start|>assistant")
        reused = len(engine.tokenizer.encode(ids1.prompt[:start], add_special_tokens=False))
    else:
        held = ids1.ids + script.tokens[:-1]
        reused = next(i for i, (a, b) in enumerate(zip([*held, -1], ids2.ids, strict=False)) if a != b)
    assert reused > 20
    assert result2.usage.cached_tokens == reused
    assert result2.usage.input_tokens == len(ids2.ids)  # cached tokens are part of the prompt


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_another_users_identical_prompt_is_not_reused(chunked: Any, arch: str) -> None:
    engine = chunked(arch)
    ids = ids_of(engine, "A private question about my own code " * 3)
    (alice,) = run(engine, [(ids, "alice-" + arch)])
    (bob,) = run(engine, [(ids, "bob-" + arch)])
    assert alice.cached == 0 and bob.cached == 0
    (alice_again,) = run(engine, [(ids, "alice-" + arch)])
    assert alice_again.cached > 0  # her own prefix is reused
    assert alice.generated == bob.generated == alice_again.generated == reference(engine, ids)


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_a_public_system_prompt_is_shared_when_the_operator_allows(chunked: Any, arch: str) -> None:
    engine = chunked(arch, share_prefix="system")
    system = "You are a careful coding assistant. Answer briefly. " * 3

    async def ask(text: str, tenant: str) -> Any:
        request = ChatRequest(model="t", messages=[{"role": "system", "content": system},
                                                   {"role": "user", "content": text}],
                              max_tokens=4, temperature=0, tenant=tenant)
        return [d async for d in engine.stream(request)][-1].usage

    public = engine.prepare(
        ChatRequest(model="t", messages=[{"role": "system", "content": system}, {"role": "user", "content": "x"}])
    ).public
    assert public > 32
    first = asyncio.run(ask("What is a closure?", "carol"))
    second = asyncio.run(ask("What is a monad?", "dave"))
    assert first.cached_tokens == 0
    assert second.cached_tokens == public  # the system prompt only, nothing of carol's question
    assert all(e.tenant != PUBLIC or len(e.tokens) == public for e in engine.scheduler.prefix._lru.values())


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_eviction_under_a_small_budget_keeps_answers_right(chunked: Any, arch: str) -> None:
    engine = chunked(arch, prefix_cache_mb=0.1)
    prefix = engine.scheduler.prefix
    prompts = [ids_of(engine, f"Topic {i}: " + "explain the history of rivers " * 8) for i in range(4)]
    per_entry = engine.scheduler.slots.bytes_per_token * len(prompts[0])
    assert 1 <= prefix.budget // per_entry < len(prompts)  # the budget holds some, not all
    evicted = prefix.evictions
    first = [run(engine, [(ids, f"evict-{i}")])[0] for i, ids in enumerate(prompts)]
    assert prefix.evictions > evicted and prefix.bytes <= prefix.budget
    follow = engine.tokenizer.encode(FOLLOW_UP, add_special_tokens=False)
    turns = [s.prompt + s.generated + follow for s in first]
    # Newest first: the newest entry is still there, the oldest was evicted.
    second = [run(engine, [(turns[i], f"evict-{i}")])[0] for i in reversed(range(len(turns)))][::-1]
    assert second[-1].cached > 0
    assert second[0].cached == 0
    assert [s.generated for s in first] == [reference(engine, ids) for ids in prompts]
    assert [s.generated for s in second] == [reference(engine, ids) for ids in turns]


def test_chunked_prefill_lets_running_streams_keep_producing(chunked: Any) -> None:
    engine = chunked("qwen3")
    scheduler = engine.scheduler
    params = SamplingParams(max_new_tokens=400, stop_token_ids=frozenset())
    tokens: dict[str, list[int]] = {"a": [], "b": [], "long": []}
    finished = threading.Semaphore(0)

    def sink_for(name: str) -> Any:
        def sink(event: tuple[str, Any]) -> None:
            if event[0] == "token":
                tokens[name].append(event[1])
            elif event[0] in ("done", "error"):
                finished.release()

        return sink

    running = [Sequence(ids_of(engine, f"stream {n}"), params, sink_for(n), tenant=n) for n in ("a", "b")]
    for seq in running:
        scheduler.submit(seq)
    assert scheduler.wait_until(lambda s: len(tokens["a"]) > 2 and len(tokens["b"]) > 2, 30)
    long_ids = ids_of(engine, "a very long prompt " * 120)
    assert len(long_ids) > 10 * 32
    long = Sequence(long_ids, SamplingParams(max_new_tokens=1, stop_token_ids=frozenset()), sink_for("long"))
    scheduler.steps.clear()
    scheduler.submit(long)
    assert finished.acquire(timeout=60)  # the long prompt's one token
    steps = list(scheduler.steps)
    for seq in running:
        seq.cancel()
    assert scheduler.wait_until(lambda s: s.idle(), 30)
    chunks = [i for i, step in enumerate(steps) if step[0] == "prefill"]
    assert len(chunks) >= 10  # the long prompt went in chunks ...
    for before, after in itertools.pairwise(chunks):  # ... each followed by a decode step
        assert ("decode", 2, 2) in steps[before + 1 : after]
    assert all(tokens <= 32 for _, _, tokens in (steps[i] for i in chunks))


def poison(engine: LocalEngine) -> None:
    """Fill every column the cache has not made finite with NaN, as uninitialised memory may be
    (fresh pages from the OS are zeros, so a test without this could not fail)."""
    slots = engine.scheduler.slots
    assert engine.scheduler.idle()  # the worker is waiting: its buffers are ours for a moment
    with torch.inference_mode():  # grown buffers are made on the worker, in inference mode
        for kbuf, vbuf in slots.kv.values():
            for slot in range(slots.slots):
                kbuf[slot, :, slots.finite[slot] :] = float("nan")
                vbuf[slot, :, slots.finite[slot] :] = float("nan")


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5"])
def test_a_grown_cache_never_reads_memory_it_did_not_write(chunked: Any, arch: str) -> None:
    engine = chunked(arch, idle_prefill_chunk=4096, max_batch_size=6)  # its own: columns not grown yet
    slots = engine.scheduler.slots
    short = [ids_of(engine, "short " + "and longer " * 3 * i) for i in range(3)]
    assert len({len(ids) for ids in short}) == 3  # rows of different lengths
    long_ids = ids_of(engine, "grow the cache please " * (slots.columns // 4))
    assert len(long_ids) > slots.columns  # this prompt makes the columns grow
    expected = [reference(engine, ids, 40) for ids in short] + [reference(engine, long_ids)]
    poison(engine)
    # Rows of different lengths in one batch: the short rows read columns past their own length.
    prompts = [(ids, f"{arch}-grow-{i}") for i, ids in enumerate(short)] + [(long_ids, f"{arch}-grow-long")]
    seqs = run(engine, prompts, tokens=40)
    assert [s.generated for s in seqs[:3]] == expected[:3]
    assert seqs[3].generated[:TOKENS] == expected[3]
    assert slots.columns > len(long_ids)
    poison(engine)  # and again, after the growth: the next batch still reads only finite columns
    again = run(engine, [(ids, f"{arch}-after-{i}") for i, ids in enumerate(short)], tokens=40)
    assert [s.generated for s in again] == expected[:3]


def test_a_grown_cache_keeps_the_rows_that_were_decoding(chunked: Any) -> None:
    engine = chunked("qwen3", max_batch_size=5)  # its own engine: columns not grown yet
    scheduler = engine.scheduler
    streams = [ids_of(engine, f"keep decoding {n}") for n in range(2)]
    expected = [reference(engine, ids, 60) for ids in streams]
    long_ids = ids_of(engine, "and now a prompt longer than every column " * (scheduler.slots.columns // 6))
    poison(engine)
    done = threading.Semaphore(0)
    seqs: list[Sequence] = []

    def sink(event: tuple[str, Any]) -> None:
        if event[0] in ("done", "error"):
            done.release()

    for ids in streams:
        seqs.append(Sequence(ids, SamplingParams(max_new_tokens=60, stop_token_ids=frozenset()), sink))
        scheduler.submit(seqs[-1])
    assert scheduler.wait_until(lambda s: all(len(q.generated) > 3 for q in seqs), 30)
    columns = scheduler.slots.columns
    scheduler.submit(Sequence(long_ids, SamplingParams(max_new_tokens=1, stop_token_ids=frozenset()), sink))
    for _ in range(3):
        assert done.acquire(timeout=60)
    assert scheduler.slots.columns > columns  # it grew while the two were decoding
    assert [s.generated for s in seqs] == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_a_prompt_prefills_in_one_pass_when_nothing_decodes(chunked: Any, arch: str) -> None:
    engine = chunked(arch, idle_prefill_chunk=4096)
    prompts = [ids_of(engine, f"Question {i}: " + "tell me why " * (6 * i + 1)) for i in range(3)]
    assert max(map(len, prompts)) > 3 * 32  # several 32-token chunks, had something decoded
    engine.scheduler.steps.clear()
    (alone,) = run(engine, [(prompts[-1], f"{arch}-one-pass")])
    prefills = [s for s in engine.scheduler.steps if s[0] == "prefill"]
    assert sum(tokens for _, _, tokens in prefills) == len(prompts[-1])
    # One pass; on hybrid models a pass also ends where a recurrent state is saved (here one
    # token before the prompt's end), never at a 32-token chunk boundary.
    assert len(prefills) == (2 if engine.scheduler.slots.hybrid else 1)
    assert alone.generated == reference(engine, prompts[-1])
    batched = run(engine, [(ids, f"{arch}-one-pass-{i}") for i, ids in enumerate(prompts)])
    assert [s.generated for s in batched] == [reference(engine, ids) for ids in prompts]
    follow = engine.tokenizer.encode(FOLLOW_UP, add_special_tokens=False)
    turn = alone.prompt + alone.generated + follow
    (second,) = run(engine, [(turn, f"{arch}-one-pass")])
    assert second.cached > 0 and second.generated == reference(engine, turn)


def test_adjacent_rows_of_similar_width_attend_together() -> None:
    from oneplan.local.kvcache import row_groups

    assert row_groups([101, 99, 120, 100]) == [(0, 4, 120)]
    assert row_groups([100] * 7 + [3000]) == [(0, 7, 100), (7, 8, 3000)]
    assert row_groups([3000, 40, 41, 60]) == [(0, 1, 3000), (1, 4, 60)]
    assert row_groups([7]) == [(0, 1, 7)]


@pytest.mark.parametrize("arch", ARCHS)
def test_short_rows_beside_a_long_one_attend_over_their_own_columns(chunked: Any, arch: str) -> None:
    engine = chunked(arch, idle_prefill_chunk=4096, max_batch_size=4)
    scheduler = engine.scheduler
    assert scheduler.slots.grouped
    short = [ids_of(engine, f"short {i} " + "word " * i) for i in range(3)]
    long_ids = ids_of(engine, "a long history to sit beside " * 60)
    assert len(long_ids) > max(map(len, short)) + ZERO_AHEAD + 200
    expected = [reference(engine, ids, 24) for ids in short] + [reference(engine, long_ids, 24)]
    run(engine, [(long_ids, f"{arch}-grow")], tokens=1)  # columns grown now, so poison reaches them
    scheduler.attention_groups.clear()
    poison(engine)  # a short row reading past its group's columns would read NaN
    seqs = run(engine, [(ids, f"{arch}-apart-{i}") for i, ids in enumerate([*short, long_ids])], tokens=24)
    assert [s.generated for s in seqs] == expected
    assert scheduler.attention_groups[2] > 0  # decode steps ran the short rows and the long row apart
