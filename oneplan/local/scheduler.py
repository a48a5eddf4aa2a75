"""Continuous batching on one worker thread, so generation never blocks the event loop.

transformers' own continuous batching runs on a paged attention cache that does not cover the
hybrid linear-attention layers of Qwen3.5, and it fixes sampling per manager rather than per
request. This scheduler is small and works for every supported architecture:

* One ``DynamicCache`` holds the running batch, left-padded, with a 2-D attention mask.
* Each step either prefills the requests that arrived (one left-padded batch, then merged into the
  running cache) or runs one decode step for every running request.
* A finished or cancelled request leaves the batch at the next step (its rows are dropped and
  all-padding columns trimmed); nothing waits for the slowest request of a batch.

Requests talk to the worker through ``Sequence.sink`` (called on the worker thread; the engine
turns it into an asyncio queue) and ``Sequence.cancel()`` (any thread).
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from oneplan.local import kvcache
from oneplan.local.sampling import SamplingParams, make_generator, sample

log = logging.getLogger(__name__)


def cache_keyword(model: Any) -> str:
    """The keyword ``model.forward`` takes its KV cache by.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in
    5.40); 5.23 knows only the old one. The decorated ``forward`` keeps its real signature, so the
    name it declares is the one to use.
    """
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"

# What the worker reports: ("token", id), ("done", "stop" | "length"), ("error", exception).
Event = tuple[str, Any]


class Sequence:
    """One request inside the scheduler."""

    __slots__ = ("_cancelled", "finish_reason", "generated", "generator", "params", "prompt", "sink")

    def __init__(self, prompt: list[int], params: SamplingParams, sink: Callable[[Event], None]):
        self.prompt = prompt
        self.params = params
        self.sink = sink
        self.generated: list[int] = []
        self.finish_reason: str | None = None
        self._cancelled = threading.Event()
        self.generator: torch.Generator | None = None

    def cancel(self) -> None:
        """Stop generating for this request at the next step (the client went away)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class Scheduler:
    def __init__(self, model: Any, *, pad_token_id: int, max_batch_size: int = 8) -> None:
        self.model = model
        self.device: torch.device = model.device
        self.pad_token_id = pad_token_id
        self.max_batch_size = max(1, max_batch_size)
        self._cache_kw = cache_keyword(model)
        # Observability (and what tests assert): how many rows each step ran with.
        self.decode_batch_sizes: collections.Counter[int] = collections.Counter()
        self.prefill_batch_sizes: collections.Counter[int] = collections.Counter()
        self.cancelled = 0
        self._cond = threading.Condition()
        self._inbox: collections.deque[Sequence] = collections.deque()
        self._paused = False
        self._closed = False
        self._active = 0  # running rows, readable from any thread under _cond
        self._seqs: list[Sequence] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._thread = threading.Thread(target=self._run, name="oneplan-local", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------------

    def submit(self, seq: Sequence) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the local engine is closed")
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

    def _admit(self) -> list[Sequence] | None:
        """Wait for work; return the requests to prefill now (maybe none), or None to stop."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._inbox and not self._paused and len(self._seqs) < self.max_batch_size:
                    break
                if self._seqs:
                    return []
                self._cond.wait()
            room = self.max_batch_size - len(self._seqs)
            newcomers: list[Sequence] = []
            while self._inbox and len(newcomers) < room:
                seq = self._inbox.popleft()
                if seq.cancelled:
                    self.cancelled += 1
                else:
                    newcomers.append(seq)
            return newcomers

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                newcomers = self._admit()
                if newcomers is None:
                    break
                try:
                    self._drop_finished()
                    if newcomers:
                        self._prefill(newcomers)
                    elif self._seqs:
                        self._decode()
                    self._drop_finished()
                except Exception as exc:  # a failed step fails every request in it, not the worker
                    log.exception("local generation step failed")
                    for seq in self._seqs + newcomers:
                        seq.sink(("error", exc))
                    self._seqs, self._cache, self._mask = [], None, None
                with self._cond:
                    self._active = len(self._seqs)
                    self._cond.notify_all()
        for seq in self._seqs + list(self._inbox):
            seq.sink(("error", RuntimeError("the local engine was shut down")))
        self._seqs = []

    def _prefill(self, seqs: list[Sequence]) -> None:
        width = max(len(s.prompt) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq.prompt) :] = torch.tensor(seq.prompt, dtype=torch.long)
            mask[row, width - len(seq.prompt) :] = 1
            seq.generator = make_generator(seq.params.seed, self.device)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: cache},
        )
        self.prefill_batch_sizes[len(seqs)] += 1
        if self._cache is None or self._mask is None or not self._seqs:
            self._cache, self._mask = cache, mask
        else:
            kvcache.merge(self._cache, self._mask.shape[1], cache, width)
            self._mask = kvcache.merge_masks(self._mask, mask)
        self._seqs.extend(seqs)
        self._emit(seqs, out.logits[:, -1, :])

    def _decode(self) -> None:
        assert self._mask is not None
        ids = torch.tensor([[s.generated[-1]] for s in self._seqs], device=self.device)
        ones = torch.ones((len(self._seqs), 1), dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1
        out = self.model(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: self._cache},
        )
        self.decode_batch_sizes[len(self._seqs)] += 1
        self._emit(self._seqs, out.logits[:, -1, :])

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
        keep = [i for i, s in enumerate(self._seqs) if not s.finish_reason and not s.cancelled]
        self.cancelled += sum(1 for s in self._seqs if s.cancelled and not s.finish_reason)
        if len(keep) == len(self._seqs):
            return
        if not keep:
            self._seqs, self._cache, self._mask = [], None, None
            return
        assert self._mask is not None
        rows = torch.tensor(keep, device=self.device)
        self._seqs = [self._seqs[i] for i in keep]
        kvcache.select_rows(self._cache, rows)
        mask = self._mask.index_select(0, rows)
        used = mask.any(dim=0).nonzero()
        unused = int(used[0]) if len(used) else 0  # leading columns that are padding everywhere
        kvcache.drop_columns(self._cache, unused)
        self._mask = mask[:, unused:]
