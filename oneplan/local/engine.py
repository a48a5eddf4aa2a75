"""One loaded checkpoint: a canonical request in, a stream of canonical deltas out.

The pipeline for a request reads top to bottom in ``stream``: render the prompt with the
checkpoint's template, check it against the context, queue it on the scheduler, then turn each
generated token into text, cut at stop sequences, and split into reasoning, text and tool calls.
Usage is counted from the token ids themselves, so it is exact; ``cached_tokens`` is the part of
the prompt the prefix cache supplied (OpenAI-style: included in ``input_tokens``).

Prefix reuse is per tenant: ``ChatRequest.tenant`` (the gateway sets it to the user's id) decides
whose cached prefixes a request may reuse. With ``share_prefix = "system"`` the prompt's leading
system message (with the tools the template renders into it) is also kept for everyone.
"""

from __future__ import annotations

import asyncio
import collections
import json
import weakref
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneplan.errors import InvalidRequest, UpstreamError
from oneplan.local import chat, loader, packing
from oneplan.local.checkpoint import Checkpoint, inspect
from oneplan.local.parsing import OutputParser
from oneplan.local.sampling import LogitsProcessor, SamplingParams
from oneplan.local.scheduler import Event, Scheduler, SchedulerOptions, Sequence
from oneplan.local.textstream import Detokenizer, StopMatcher
from oneplan.protocols.canonical import ChatRequest, Delta, Usage


@dataclass(frozen=True, slots=True)
class EngineOptions:
    path: str
    device: str | None = None
    dtype: str | None = None
    max_batch_size: int = 8
    context_length: int | None = None
    prefill_chunk: int = 256
    idle_prefill_chunk: int = 2048  # prompt tokens per prefill step while no stream decodes
    admission_window_ms: float = 5.0
    prefix_cache_mb: float = 512
    share_prefix: str = "none"  # or "system"
    pack_weights: bool = True  # linear layers in oneDNN's layout on a float32 CPU (packing.py)


class Mailbox:
    """Hands the worker's events to one event loop's streams, one loop wake-up per batch.

    ``call_soon_threadsafe`` writes to the loop's self-pipe: once per token per stream, that was
    eight syscalls and eight wake-ups a decode step at eight streams. Events queue here and the
    first one of a batch schedules one ``drain`` that delivers them all.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # the engine's map of mailboxes must not keep a loop alive
        self.items: collections.deque[tuple[asyncio.Queue[Event], Event]] = collections.deque()
        self.scheduled = False

    def post(self, queue: asyncio.Queue[Event], event: Event) -> bool:
        """From the worker thread; False when the loop is gone (nobody is listening)."""
        loop = self.loop()
        if loop is None or loop.is_closed():
            return False
        self.items.append((queue, event))
        if not self.scheduled:
            self.scheduled = True
            try:
                loop.call_soon_threadsafe(self.drain)
            except RuntimeError:
                return False
        return True

    def drain(self) -> None:
        self.scheduled = False  # first: an event posted from now on schedules another drain
        while self.items:
            queue, event = self.items.popleft()
            queue.put_nowait(event)


@dataclass(slots=True)
class Prepared:
    prompt: str
    ids: list[int]
    params: SamplingParams
    opens_thinking: bool
    public: int = 0  # leading tokens that may be shared across tenants
    history: int = 0  # leading tokens before the generation prompt (a next turn starts with them)


class LocalEngine:
    def __init__(self, checkpoint: Checkpoint, model: Any, tokenizer: Any, options: EngineOptions):
        self.checkpoint = checkpoint
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = options.context_length or checkpoint.context_length
        self.stop_token_ids = self._stop_ids()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_token_ids)
        self.share_system = options.share_prefix == "system"
        self.scheduler = Scheduler(
            model,
            pad_token_id=pad,
            options=SchedulerOptions(
                max_batch_size=options.max_batch_size,
                prefill_chunk=options.prefill_chunk,
                idle_prefill_chunk=max(options.prefill_chunk, options.idle_prefill_chunk),
                admission_window=options.admission_window_ms / 1000,
                prefix_cache_bytes=int(options.prefix_cache_mb * 2**20),
            ),
        )
        self.defaults = self._generation_defaults()
        # Tests (and future grammar constraints) add logits processors per request here.
        self.processors: Callable[[ChatRequest], list[LogitsProcessor]] | None = None
        self._mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailbox] = weakref.WeakKeyDictionary()

    @classmethod
    def load(cls, options: EngineOptions) -> LocalEngine:
        """Validate, load and start. Slow: call it off the event loop."""
        checkpoint = inspect(options.path)
        device = loader.resolve_device(options.device)
        dtype = loader.resolve_dtype(options.dtype, device)
        model, tokenizer = loader.load(checkpoint, device, dtype)
        if options.pack_weights:
            packing.pack(model, options.max_batch_size)
        return cls(checkpoint, model, tokenizer, options)

    def close(self) -> None:
        self.scheduler.close()

    def _stop_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.model.config):
            eos = getattr(source, "eos_token_id", None)
            ids.update([eos] if isinstance(eos, int) else eos or [])
        for token in ("<|im_end|>", "<|endoftext|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)

    def _generation_defaults(self) -> dict[str, Any]:
        """The sampling the checkpoint's ``generation_config.json`` recommends."""
        path = Path(self.checkpoint.path, "generation_config.json")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not config.get("do_sample"):
            return {"temperature": 0.0}
        return {k: config[k] for k in ("temperature", "top_p", "top_k") if k in config}

    # -- request preparation ------------------------------------------------------------------

    def prepare(self, request: ChatRequest) -> Prepared:
        prompt = chat.render(self.tokenizer, request, thinks=self.checkpoint.thinks)
        ids = list(self.tokenizer.encode(prompt, add_special_tokens=False))
        room = self.context_length - len(ids)
        if room <= 0:
            raise InvalidRequest(
                f"the prompt is {len(ids)} tokens; this model's context length is "
                f"{self.context_length} tokens",
                param="messages",
            )
        if request.max_tokens is not None:
            if request.max_tokens < 1:
                raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
            if request.max_tokens > room:
                raise InvalidRequest(
                    f"max_tokens is {request.max_tokens} but the prompt is {len(ids)} tokens and "
                    f"this model's context length is {self.context_length}: at most {room} "
                    "tokens can be generated",
                    param="max_tokens",
                )
        public = 0
        if self.share_system and prompt.startswith("<|im_start|>system"):
            public = self._tokens_before(prompt, ids, prompt.find("<|im_end|>") + len("<|im_end|>"))
        history = self._tokens_before(prompt, ids, prompt.rfind("<|im_start|>assistant"))
        return Prepared(
            prompt, ids, self._sampling(request, room), chat.opens_thinking(prompt), public, history
        )

    def _tokens_before(self, prompt: str, ids: list[int], end: int) -> int:
        """How many of ``ids`` spell ``prompt[:end]`` (0 unless they tokenize as a prefix)."""
        if end <= 0:
            return 0
        head = list(self.tokenizer.encode(prompt[:end], add_special_tokens=False))
        return len(head) if ids[: len(head)] == head else 0

    def _sampling(self, request: ChatRequest, room: int) -> SamplingParams:
        temperature = request.temperature
        if temperature is None:
            temperature = float(self.defaults.get("temperature", 0.0))
        if temperature < 0:
            raise InvalidRequest("temperature must be >= 0", param="temperature")
        top_p = request.top_p if request.top_p is not None else self.defaults.get("top_p", 1.0)
        if not 0 < top_p <= 1:
            raise InvalidRequest("top_p must be in (0, 1]", param="top_p")
        top_k = request.extra.get("top_k", self.defaults.get("top_k", 0))
        return SamplingParams(
            max_new_tokens=request.max_tokens or room,
            temperature=float(temperature),
            top_p=float(top_p),
            top_k=int(top_k or 0),
            seed=request.seed,
            stop_token_ids=self.stop_token_ids,
            processors=self.processors(request) if self.processors else [],
        )

    # -- generation -----------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        prepared = await asyncio.to_thread(self.prepare, request)
        loop = asyncio.get_running_loop()
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = Mailbox(loop)
        events: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:  # runs on the worker thread
            if not mailbox.post(events, event):  # the event loop is gone: nobody is listening
                seq.cancel()

        seq = Sequence(
            prepared.ids,
            prepared.params,
            sink,
            tenant=request.tenant or "",
            public=prepared.public,
            history=prepared.history,
        )
        detok = Detokenizer(self.tokenizer)
        stops = StopMatcher(request.stop)
        parser = OutputParser(
            style=self.checkpoint.tool_style,
            tools=request.tools,
            in_reasoning=prepared.opens_thinking,
            keep_reasoning=request.thinking.enabled is not False,
            parse_tools=bool(request.tools) and request.tool_choice != "none",
        )
        generated = reasoning_tokens = 0
        finish: str | None = None
        stop_hit = False
        self.scheduler.submit(seq)
        try:
            while finish is None:
                batch = [await events.get()]
                while not events.empty():
                    batch.append(events.get_nowait())
                text_parts: list[str] = []
                for kind, value in batch:
                    if kind == "error":
                        raise UpstreamError(f"local generation failed: {value}", retryable=False)
                    if kind == "done":
                        finish = str(value)
                        break
                    generated += 1
                    if parser.in_reasoning:
                        reasoning_tokens += 1
                    if value in self.stop_token_ids:
                        continue
                    text, hit = stops.feed(detok.add(value))
                    text_parts.append(text)
                    if hit:
                        finish, stop_hit = "stop", True
                        seq.cancel()
                        break
                delta = parser.feed("".join(text_parts))
                if delta is not None:
                    yield delta
        finally:
            seq.cancel()  # a no-op when finished; stops generation when the client went away
        tail = ""
        if not stop_hit:  # text still held back: an unfinished character or a partial stop
            tail, stop_hit = stops.feed(detok.flush())
            tail += "" if stop_hit else stops.flush()
            finish = "stop" if stop_hit else finish
        last = parser.feed(tail) if tail else None
        end = parser.finish()
        for delta in (last, end):
            if delta is not None:
                yield delta
        if finish == "stop" and parser.calls:
            finish = "tool_calls"
        usage = Usage(
            input_tokens=len(prepared.ids),
            output_tokens=generated,
            cached_tokens=seq.cached,
            reasoning_tokens=reasoning_tokens,
        )
        yield Delta(finish_reason=finish, usage=usage)
