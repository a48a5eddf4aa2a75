"""Continuous batching on one worker thread, so generation never blocks the event loop.

transformers' own continuous batching runs on a paged attention cache that does not cover the
hybrid linear-attention layers of Qwen3.5, and it fixes sampling per manager rather than per
request. This scheduler is small and works for every supported architecture:

* Storage is ``kvcache.SlotCache``: one preallocated row per sequence, decoding rows at the
  bottom, rows being prefilled at the top; joining and leaving move one row, never the batch.
* New requests that arrive within ``admission_window`` seconds of each other form one *prefill
  group*. A group starts from the longest prefix the prefix cache holds for each of its requests
  (``prefix.PrefixCache``) and prefills the rest in chunks of about ``prefill_chunk`` tokens.
* Steps alternate: one prefill chunk, one decode step for every running request, one chunk, ...
  so a long prompt delays a running stream's next token by about one chunk, not its whole prompt.
  With no stream decoding, consecutive chunks run as one pass of up to ``idle_prefill_chunk``
  tokens (a chunk boundary costs a pass over every weight and buys nothing when nobody waits).
* A finished or cancelled request leaves at the next step; its KV goes into the prefix cache.

A group's rows are right-aligned on a common grid (every row's last prompt token is in the last
chunk, so one forward pass yields every row's first token); a row shorter than the group is
left-padded in its first chunk only. Padding is harmless to attention (it writes to a sink column
and is masked) and to a linear-attention state that is still zero (a zero input keeps it zero),
but not to one restored from a prefix: on hybrid models such a row is prefilled alone.

Requests talk to the worker through ``Sequence.sink`` (called on the worker thread; the engine
turns it into an asyncio queue) and ``Sequence.cancel()`` (any thread). ``steps`` records what
each step did, in order (what tests assert on, not timing).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from oneplan.local.kvcache import SlotCache, Window, cache_keyword, mask, row_groups, use_row_attention
from oneplan.local.prefix import PUBLIC, Hit, PrefixCache
from oneplan.local.sampling import SamplingParams, make_generator, sample

__all__ = ["Event", "Scheduler", "SchedulerOptions", "Sequence", "cache_keyword"]

log = logging.getLogger(__name__)

# What the worker reports: ("token", id), ("done", "stop" | "length"), ("error", exception).
Event = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    max_batch_size: int = 8
    prefill_chunk: int = 256  # prompt tokens per prefill step (shared by the group's rows)
    # ... and while no stream decodes (nobody waits for a token between chunks): fewer, larger
    # forward passes, each one reading every weight once; bounded for activations' memory.
    idle_prefill_chunk: int = 2048
    admission_window: float = 0.005  # seconds the first arrival waits for company
    prefix_cache_bytes: int = 512 * 2**20  # 0 turns prefix reuse off


class Sequence:
    """One request inside the scheduler."""

    __slots__ = (
        "_cancelled", "arrived", "cached", "finish_reason", "generated", "generator", "history",
        "length", "params", "prompt", "public", "saved", "sink", "slot", "start", "tenant",
    )

    def __init__(
        self,
        prompt: list[int],
        params: SamplingParams,
        sink: Callable[[Event], None],
        *,
        tenant: str = "",
        public: int = 0,
        history: int = 0,
    ):
        self.prompt = prompt
        self.params = params
        self.sink = sink
        self.tenant = tenant  # whose prefixes this request may reuse, and leaves its own under
        self.public = public  # leading prompt tokens that may be shared with everyone (0: none)
        self.history = history  # where the conversation so far ends (the generation prompt starts)
        self.generated: list[int] = []
        self.finish_reason: str | None = None
        self._cancelled = threading.Event()
        self.generator: torch.Generator | None = None
        self.arrived = time.monotonic()
        self.cached = 0  # prompt tokens reused from the prefix cache
        self.slot = -1
        self.length = 0  # tokens whose KV is in the slot
        self.start = 0  # this row's first grid position in its prefill group
        self.saved: dict[int, list[Any]] = {}  # hybrid: linear states taken at these positions

    def cancel(self) -> None:
        """Stop generating for this request at the next step (the client went away)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def tokens(self) -> list[int]:
        """The tokens whose KV the slot holds."""
        return (self.prompt + self.generated)[: self.length]


@dataclass(slots=True)
class Group:
    """Requests prefilled together; rows sorted by how much they have left, shortest first."""

    seqs: list[Sequence]
    cuts: list[int]  # grid positions where chunks end; the last is the grid's length
    marks: dict[int, list[tuple[Sequence, int]]]  # grid position -> (row, prompt position) to snapshot
    done: int = 0  # grid positions prefilled so far


class Scheduler:
    def __init__(self, model: Any, *, pad_token_id: int, options: SchedulerOptions | None = None) -> None:
        self.options = options or SchedulerOptions()
        self.model = model
        self.device: torch.device = model.device
        self.pad_token_id = pad_token_id
        self.max_batch_size = max(1, self.options.max_batch_size)
        self._cache_kw = cache_keyword(model)
        self._attn = str(getattr(model.config, "_attn_implementation", None) or "sdpa")
        self._dtype = model.dtype
        self.slots = SlotCache(model, self.max_batch_size)
        self.slots.grouped = use_row_attention(model)  # rows attend over their own widths
        self.prefix = PrefixCache(self.options.prefix_cache_bytes, hybrid=self.slots.hybrid)
        # Observability (and what tests assert): rows per step, and each step in order.
        self.decode_batch_sizes: collections.Counter[int] = collections.Counter()
        self.prefill_batch_sizes: collections.Counter[int] = collections.Counter()
        self.attention_groups: collections.Counter[int] = collections.Counter()  # per forward pass
        self.steps: collections.deque[tuple[str, int, int]] = collections.deque(maxlen=4096)
        self.cancelled = 0
        self._cond = threading.Condition()
        self._inbox: collections.deque[Sequence] = collections.deque()
        self._paused = False
        self._closed = False
        self._active = 0  # running rows, readable from any thread under _cond
        self._seqs: list[Sequence] = []  # decoding, seqs[i].slot == i
        self._group: Group | None = None
        self._prefill_turn = True
        self._thread = threading.Thread(target=self._run, name="oneplan-local", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the local engine is closed")
            seq.arrived = time.monotonic()
            self._inbox.append(seq)
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._inbox)

    @property
    def active(self) -> int:
        with self._cond:
            return self._active

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold new requests at the door (running ones continue); for tests and maintenance."""
        with self._cond:
            self._paused = True
        try:
            yield
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()

    def wait_until(self, predicate: Callable[[Scheduler], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds after some step, or ``timeout`` seconds pass."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout=timeout)

    def idle(self) -> bool:
        return not self._inbox and self._active == 0

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the worker thread --------------------------------------------------------------------

    def _room(self) -> int:
        return self.max_batch_size - len(self._seqs)

    def _take(self) -> list[Sequence] | None:
        """Wait for work; return the requests to start a prefill group with now (maybe none),
        or None to stop. Called under no lock."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                busy = bool(self._seqs) or self._group is not None
                if self._inbox and not self._paused and self._group is None and self._room() > 0:
                    wait = self._inbox[0].arrived + self.options.admission_window - time.monotonic()
                    if wait <= 0 or len(self._inbox) >= self._room():
                        break
                    if not busy:  # nothing else to do: give the next arrivals a moment to come
                        self._cond.wait(wait)
                        continue
                if busy:
                    return []
                self._cond.wait()
            taken: list[Sequence] = []
            while self._inbox and len(taken) < self._room():
                seq = self._inbox.popleft()
                if seq.cancelled:
                    self.cancelled += 1
                else:
                    taken.append(seq)
            return taken

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                newcomers = self._take()
                if newcomers is None:
                    break
                try:
                    if newcomers:
                        self._start_group(newcomers)
                    self._drop_finished()
                    if self._group is not None and (self._prefill_turn or not self._seqs):
                        self._prefill_step()
                        self._prefill_turn = False
                    elif self._seqs:
                        self._decode()
                        self._prefill_turn = True
                    self._drop_finished()
                except Exception as exc:  # a failed step fails every request in it, not the worker
                    log.exception("local generation step failed")
                    group = self._group.seqs if self._group else []
                    for seq in {id(s): s for s in self._seqs + group + newcomers}.values():
                        seq.sink(("error", exc))
                    self._seqs, self._group = [], None
                with self._cond:
                    self._active = len(self._seqs) + (len(self._group.seqs) if self._group else 0)
                    self._cond.notify_all()
        group = self._group.seqs if self._group else []
        for seq in self._seqs + group + list(self._inbox):
            seq.sink(("error", RuntimeError("the local engine was shut down")))
        self._seqs, self._group = [], None

    # -- prefill --------------------------------------------------------------------------------

    def _lookup(self, seq: Sequence) -> Hit | None:
        if self.prefix.budget <= 0:
            return None
        return self.prefix.lookup([seq.tenant, PUBLIC], seq.prompt)

    def _start_group(self, newcomers: list[Sequence]) -> None:
        hits = {id(s): self._lookup(s) for s in newcomers}
        if self.slots.hybrid:  # rows that carry a state in go alone (padding would disturb it)
            alone = [s for s in newcomers if hits[id(s)] is not None]
            if alone:
                chosen = alone[0]
                with self._cond:  # the others go back to the head of the queue, in order
                    self._inbox.extendleft(reversed([s for s in newcomers if s is not chosen]))
                newcomers[:] = [chosen]
        for seq in newcomers:
            hit = hits[id(seq)]
            seq.cached = hit.length if hit else 0
            seq.length = seq.cached
            seq.generator = make_generator(seq.params.seed, self.device)
        seqs = sorted(newcomers, key=lambda s: len(s.prompt) - s.cached)
        self._grow(max(len(s.prompt) for s in seqs) + 1)  # once for the group, not per chunk
        top = self.max_batch_size - len(seqs)
        for i, seq in enumerate(seqs):
            seq.slot = top + i
            hit = hits[id(seq)]
            if hit is None:
                self.slots.clear_state(seq.slot)
            else:
                self.slots.restore(seq.slot, hit.kv, hit.length, hit.state)
        grid = max(len(s.prompt) - s.cached for s in seqs)
        for seq in seqs:
            seq.start = grid - (len(seq.prompt) - seq.cached)
        chunk = max(16, self.options.prefill_chunk // len(seqs))
        cuts = {grid - k * chunk for k in range(grid // chunk + 1)} - {0}
        marks: dict[int, list[tuple[Sequence, int]]] = {}
        if self.slots.hybrid:
            # A recurrent state exists only where a chunk ends: end one where the history ends
            # (the next turn of a conversation resumes there), where a public prefix ends, and
            # one token before the prompt's end (the same prompt again: a retry, a regeneration).
            for seq in seqs:
                for position in {seq.history, seq.public, len(seq.prompt) - 1}:
                    if seq.cached < position < len(seq.prompt):
                        marks.setdefault(seq.start + position - seq.cached, []).append((seq, position))
        cuts |= set(marks)
        self._group = Group(seqs, sorted(cuts | {grid}), marks=marks)
        self.prefill_batch_sizes[len(seqs)] += 1

    def _prefill_step(self) -> None:
        group = self._group
        assert group is not None
        lo = group.done
        at = next(i for i, c in enumerate(group.cuts) if c > lo)
        if not self._seqs:  # nothing to interleave with: run chunks together, up to a snapshot mark
            room = max(1, self.options.idle_prefill_chunk // len(group.seqs))
            while at + 1 < len(group.cuts) and group.cuts[at] not in group.marks and group.cuts[at + 1] - lo <= room:
                at += 1
        hi = group.cuts[at]
        rows = [s for s in group.seqs if s.start < hi]  # a suffix: sorted by how much is left
        q = hi - lo
        ids = torch.full((len(rows), q), self.pad_token_id, dtype=torch.long)
        cols = torch.full((len(rows), q), -1, dtype=torch.long)
        positions = torch.zeros((len(rows), q), dtype=torch.long)
        real = torch.zeros((len(rows), q), dtype=torch.bool)
        for r, seq in enumerate(rows):
            first = max(lo, seq.start)
            at = seq.cached + first - seq.start  # prompt index of the first token in this chunk
            n = hi - first
            ids[r, first - lo :] = torch.tensor(seq.prompt[at : at + n], dtype=torch.long)
            cols[r, first - lo :] = torch.arange(at, at + n)
            positions[r, first - lo :] = torch.arange(at, at + n)
            real[r, first - lo :] = True
        widths = [seq.cached + hi - seq.start for seq in rows]  # each row's last column, + 1
        logits = self._forward(rows[0].slot, rows[-1].slot + 1, ids, cols, positions, real, widths)
        for seq in rows:
            seq.length = seq.cached + hi - seq.start
        group.done = hi
        self.steps.append(("prefill", len(rows), len(rows) * q))
        for seq, position in group.marks.get(hi, []):
            seq.saved[position] = self.slots.snapshot_state(seq.slot)
            if position == seq.public:
                self._share_public(seq)
        if hi < group.cuts[-1]:
            return
        # The whole group is prefilled: its rows join the running batch, each with its first token.
        self._group = None
        joining = [s for s in group.seqs if not s.cancelled]
        self.cancelled += len(group.seqs) - len(joining)
        keep = [r for r, s in enumerate(rows) if not s.cancelled]
        for seq in joining:
            if self.slots.hybrid:
                seq.saved[len(seq.prompt)] = self.slots.snapshot_state(seq.slot)
            if seq.public and not self.slots.hybrid and seq.cached < seq.public < len(seq.prompt):
                self._share_public(seq)
            dst = len(self._seqs)
            self.slots.move(seq.slot, dst, seq.length)
            seq.slot = dst
            self._seqs.append(seq)
        if joining:
            self._emit(joining, logits[keep])

    def _share_public(self, seq: Sequence) -> None:
        """Keep the leading ``seq.public`` tokens (the system prompt) for every tenant."""
        n = seq.public
        if self.prefix.budget <= 0 or seq.length < n:
            return
        states = {n: seq.saved[n]} if self.slots.hybrid else {}
        self.prefix.insert(PUBLIC, seq.prompt[:n], self.slots.snapshot_kv(seq.slot, n), states)

    # -- decode ---------------------------------------------------------------------------------

    def _decode(self) -> None:
        seqs = self._seqs
        ids = torch.tensor([[s.generated[-1]] for s in seqs], dtype=torch.long)
        lengths = torch.tensor([[s.length] for s in seqs], dtype=torch.long)
        real = torch.ones((len(seqs), 1), dtype=torch.bool)
        widths = [s.length + 1 for s in seqs]
        self._grow(max(widths))
        logits = self._forward(0, len(seqs), ids, lengths, lengths, real, widths)
        for seq in seqs:
            seq.length += 1
        self.decode_batch_sizes[len(seqs)] += 1
        self.steps.append(("decode", len(seqs), len(seqs)))
        self._emit(seqs, logits)

    def _grow(self, columns: int) -> None:
        rows = self._seqs + (self._group.seqs if self._group else [])
        self.slots.ensure_columns(columns, [(s.slot, s.length) for s in rows])

    def _forward(
        self,
        lo: int,
        hi: int,
        ids: torch.Tensor,
        cols: torch.Tensor,
        positions: torch.Tensor,
        real: torch.Tensor,
        widths: list[int],
    ) -> torch.Tensor:
        """Run slots ``lo .. hi`` on ``ids``; the last position's logits, ``[rows, vocab]``.
        ``widths``: the columns each row attends over (its last position + 1)."""
        dev = self.device
        ids, cols, positions, real = ids.to(dev), cols.to(dev), positions.to(dev), real.to(dev)
        width = max(widths)
        window = Window(lo, hi, cols, width, row_groups(widths))
        cache = self.slots.open(window)
        self.attention_groups[len(window.groups)] += 1
        full = mask(positions, real, width, self._attn, self._dtype)
        masks: Any = full  # a ready 4-D mask is passed through as is
        if self.slots.hybrid:  # ... and Qwen3.5 takes one per layer type (padding zeroed in linear ones)
            linear = None if bool(real.all()) else real.to(self._dtype)
            masks = {"full_attention": full, "linear_attention": linear}
        out = self.model(
            input_ids=ids,
            attention_mask=masks,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
        )
        logits: torch.Tensor = out.logits  # the model is untyped (transformers)
        return logits[:, -1, :]

    def _emit(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        params = [s.params for s in seqs]
        tokens = sample(logits, params, [s.generated for s in seqs], [s.generator for s in seqs])
        for seq, token in zip(seqs, tokens, strict=True):
            seq.generated.append(token)
            seq.sink(("token", token))
            if token in seq.params.stop_token_ids:
                seq.finish_reason = "stop"
            elif len(seq.generated) >= seq.params.max_new_tokens:
                seq.finish_reason = "length"
            if seq.finish_reason:
                seq.sink(("done", seq.finish_reason))

    def _drop_finished(self) -> None:
        """Finished and cancelled rows leave: their KV goes to the prefix cache, and the last
        running row moves into each hole."""
        for slot in range(len(self._seqs) - 1, -1, -1):
            seq = self._seqs[slot]
            if not seq.finish_reason and not seq.cancelled:
                continue
            if seq.cancelled and not seq.finish_reason:
                self.cancelled += 1
            self._remember(seq)
            last = len(self._seqs) - 1
            if slot != last:
                moved = self._seqs[last]
                self.slots.move(last, slot, moved.length)
                moved.slot = slot
                self._seqs[slot] = moved
            self._seqs.pop()

    def _remember(self, seq: Sequence) -> None:
        if self.prefix.budget <= 0 or seq.length <= 0:
            return
        states = {}
        if self.slots.hybrid:  # resumable where the answer ends, and where prefill saved states
            states = {p: s for p, s in seq.saved.items() if p <= seq.length}
            states[seq.length] = self.slots.snapshot_state(seq.slot)
        self.prefix.insert(seq.tenant, seq.tokens(), self.slots.snapshot_kv(seq.slot, seq.length), states)
