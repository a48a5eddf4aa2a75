"""Per-row KV storage for the running batch: preallocated, so rows join and leave without copying
the others, and no row is padded to the longest one.

Layout. Every full-attention layer owns two buffers ``[slots, kv_heads, columns + 1, head_dim]``: a
sequence occupies one slot (a row) and its tokens sit at columns ``0 .. len-1`` of that row,
whatever the lengths of the other rows; the extra last column is a sink that padding tokens write
to and nobody reads. Linear-attention layers (Qwen3.5's gated delta net) own ``[slots, ...]``
buffers for their conv and recurrent state. A forward pass runs on a contiguous range of slots,
which is a view: the scheduler keeps the decoding sequences at the bottom (``0 .. n``) and the
sequences being prefilled at the top, so neither step copies the other's rows.

Costs: joining the running batch moves one row (only its own columns); leaving moves the last
running row into the hole; columns grow by doubling, rarely, copying only what live rows hold.
Buffers are allocated uninitialised and made finite lazily, per row, only up to the columns a
forward pass reads (``open``): a grown cache costs virtual memory, not a pass over every row's
columns (zeroing 8 rows x 6,600 columns took 0.2-0.3 s, in a waiting request's first token).
A row's columns past its length are read (masked) by a batch wider than the row, so they must
hold finite numbers: a previous occupant's keys or zeros, never uninitialised memory.

Rows of different lengths do not pay for the longest one: attention runs per run of adjacent rows
of similar widths (``row_groups``), each over its own columns only, through an attention function
registered with transformers (``ROW_ATTENTION``, SDPA per group); without it a decode step beside
a 3,000-token row had every short row attend over 3,000 masked columns in every layer.

transformers sees an ordinary ``DynamicCache`` whose attention layers are ``SlotLayer`` (writes go
to per-row columns, reads are a view of the window) and whose linear-attention layers are
transformers' own, pointed at views of our state buffers before each forward (they update their
states in place). The attention mask is built here (``mask``) and handed to the model ready-made.
"""

from __future__ import annotations

import contextvars
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

ZERO_AHEAD = 256  # columns made finite at once, past the ones a forward pass reads
ROW_ATTENTION = "oneplan_rows"  # the attention implementation that honours ``Window.groups``
SPLIT_COST = 64  # columns one more attention call is worth: a group splits when it saves more


@dataclass(slots=True)
class Window:
    """The slots and columns the next forward pass reads and writes."""

    lo: int
    hi: int
    cols: torch.Tensor  # [rows, q] column each new token writes to (the sink for padding)
    width: int  # columns the widest row attends over
    groups: list[tuple[int, int, int]] = field(default_factory=list)  # (lo, hi, width), rows from 0


def row_groups(widths: list[int], split_cost: int = SPLIT_COST) -> list[tuple[int, int, int]]:
    """Adjacent rows in runs ``(lo, hi, width)`` that attend over ``width`` columns together.

    Greedy: a row joins the current run unless widening the run to it (or it to the run) costs
    more columns than one more attention call (``split_cost``). Seven short rows beside one of
    3,000 columns become two runs; rows within a few dozen columns of each other stay one.
    """
    groups: list[tuple[int, int, int]] = []
    lo, top = 0, widths[0]
    for i in range(1, len(widths)):
        width = widths[i]
        merged = (i - lo + 1) * max(top, width)
        split = (i - lo) * top + width + split_cost
        if merged <= split:
            top = max(top, width)
        else:
            groups.append((lo, i, top))
            lo, top = i, width
    groups.append((lo, len(widths), top))
    return groups


_GROUPS: contextvars.ContextVar[list[tuple[int, int, int]] | None] = contextvars.ContextVar(
    "oneplan_row_groups", default=None
)


def _row_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any, **kwargs: Any
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, once per row group, each over its own width."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = _GROUPS.get()
    if not groups or groups[-1][1] != query.shape[0] or len(groups) == 1:  # one group (or a call
        # from outside the worker's forward, e.g. a probe): the whole window, as SDPA alone would
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    for lo, hi, width in groups:
        part = None if attention_mask is None else attention_mask[lo:hi, ..., :width]
        out, _ = sdpa_attention_forward(
            module, query[lo:hi], key[lo:hi, :, :width], value[lo:hi, :, :width], part, **kwargs
        )
        outputs.append(out)
    return torch.cat(outputs, dim=0), None


def use_row_attention(model: Any) -> bool:
    """Switch ``model`` (on SDPA) to ``ROW_ATTENTION``; False where it runs another kind."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ROW_ATTENTION, _row_attention)
    AttentionMaskInterface.register(ROW_ATTENTION, sdpa_mask)  # masks come ready-made; in case
    model.set_attn_implementation(ROW_ATTENTION)
    return True


def cache_keyword(model: Any) -> str:
    """The keyword ``model.forward`` takes its KV cache by.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in
    5.40); 5.23 knows only the old one. The decorated ``forward`` keeps its real signature, so the
    name it declares is the one to use.
    """
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _slot_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):
        _layer_type = None  # never register in transformers' layer-type mapping

        def __init__(self, store: SlotCache, index: int) -> None:
            DynamicLayer.__init__(self)
            self.store, self.index = store, index
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            return self.store.write(self.index, key_states, value_states)

        def get_seq_length(self) -> int:
            return self.store.window.width if self.store.window else 0

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length(), 0

    return SlotLayer


def _linear_layer(layer: object) -> LinearAttentionCacheLayerMixin:
    """``layer`` as the linear-attention layer ``SlotCache`` found there (transformers types a
    cache's layers as a union of every kind)."""
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    if not isinstance(layer, LinearAttentionCacheLayerMixin):
        raise RuntimeError(f"expected a linear-attention cache layer, found {type(layer).__name__}")
    return layer


class SlotCache:
    """The running batch's cache; ``cache`` is what the model's forward receives."""

    def __init__(self, model: Any, slots: int, columns: int = 256) -> None:
        from transformers import DynamicCache
        from transformers.cache_utils import LinearAttentionCacheLayerMixin

        self.slots = slots
        self.columns = columns
        self.device = model.device
        self.window: Window | None = None
        self.grouped = False  # the model attends per row group (``use_row_attention``)
        probe = DynamicCache(config=model.config)
        ids = torch.zeros((1, 4), dtype=torch.long, device=self.device)
        with torch.inference_mode():
            model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_keyword(model): probe})
        self.cache = DynamicCache(config=model.config)
        slot_layer = _slot_layer_class()
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.states: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.kernel: dict[int, int] = {}
        for index, layer in enumerate(probe.layers):
            keys = getattr(layer, "keys", None)
            conv0: torch.Tensor | None = None
            rec0: torch.Tensor | None = None
            if isinstance(layer, LinearAttentionCacheLayerMixin):
                conv0, rec0 = layer.conv_states.get(0), layer.recurrent_states.get(0)
            if isinstance(keys, torch.Tensor) and keys.dim() == 4:
                _, heads, _, dim = keys.shape
                shape = (slots, heads, columns + 1, dim)
                self.kv[index] = (keys.new_empty(shape), keys.new_empty(shape))
                self.cache.layers[index] = slot_layer(self, index)
            elif conv0 is not None and rec0 is not None:
                self.kernel[index] = conv0.shape[-1]
                self.states[index] = (
                    conv0.new_zeros((slots, *conv0.shape[1:])),
                    rec0.new_zeros((slots, *rec0.shape[1:])),
                )
            else:
                raise RuntimeError(f"unsupported cache layer {type(layer).__name__}")
        self.finite = [0] * slots  # per slot: columns 0 .. finite-1 hold finite numbers
        self.bytes_per_token = sum(2 * k[0, :, 0].numel() * k.element_size() for k, _ in self.kv.values())

    @property
    def hybrid(self) -> bool:
        """Whether some layers keep a recurrent state (a prefix is then reusable only where one was saved)."""
        return bool(self.states)

    # -- the forward pass's view ------------------------------------------------------------

    def open(self, window: Window) -> Any:
        """Point every layer at ``window``; returns the cache to pass to the model."""
        assert window.width <= self.columns and int(window.cols.max()) < self.columns, "grow first"
        window.cols = torch.where(window.cols < 0, self.columns, window.cols)
        if not window.groups or not self.grouped:  # attention that reads the whole window
            window.groups = [(0, window.hi - window.lo, window.width)]
        self.window = window
        _GROUPS.set(window.groups)
        for lo, hi, width in window.groups:  # a row reads its group's columns, no more
            self._make_finite(window.lo + lo, window.lo + hi, width)
        for index, (conv, rec) in self.states.items():
            layer = _linear_layer(self.cache.layers[index])
            layer.conv_states[0] = conv[window.lo : window.hi]
            layer.recurrent_states[0] = rec[window.lo : window.hi]
            layer.conv_kernel_size[0] = self.kernel[index]
            layer.is_conv_states_initialized[0] = layer.is_recurrent_states_initialized[0] = True
            layer.has_previous_state[0] = True  # a fresh row's state is zeros, which is the same
            # transformers' mixin starts ``device`` and ``dtype`` as None (its first update sets
            # them), so their inferred type is None: assigned through an untyped view.
            untyped: Any = layer
            untyped.device, untyped.dtype = conv.device, conv.dtype
        return self.cache

    def _make_finite(self, lo: int, hi: int, width: int) -> None:
        """Zero, once, the never-written columns below ``width`` of slots ``lo .. hi``; a block
        ahead at a time, so a decoding row (one column wider each step) is zeroed once per
        ``ZERO_AHEAD`` steps, not 2 x layers small fills every step."""
        for slot in range(lo, hi):
            start = self.finite[slot]
            if start >= width:
                continue
            end = min(self.columns, max(width, start + ZERO_AHEAD))
            for kbuf, vbuf in self.kv.values():
                kbuf[slot, :, start:end].zero_()
                vbuf[slot, :, start:end].zero_()
            self.finite[slot] = end

    def write(self, index: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.window
        assert window is not None
        kbuf, vbuf = self.kv[index]
        kview, vview = kbuf[window.lo : window.hi], vbuf[window.lo : window.hi]
        rows = torch.arange(window.hi - window.lo, device=keys.device)[:, None]
        kview[rows, :, window.cols] = keys.transpose(1, 2)
        vview[rows, :, window.cols] = values.transpose(1, 2)
        return kview[:, :, : window.width], vview[:, :, : window.width]

    def ensure_columns(self, needed: int, live: list[tuple[int, int]]) -> None:
        """Room for ``needed`` columns; ``live`` (slot, length) rows keep their tokens. Grows by
        doubling, copying only what live rows hold (the rest of a row is never read)."""
        if needed <= self.columns:
            return
        columns = max(needed, 2 * self.columns)
        for index, (kbuf, vbuf) in self.kv.items():
            shape = (self.slots, kbuf.shape[1], columns + 1, kbuf.shape[3])
            knew, vnew = kbuf.new_empty(shape), vbuf.new_empty(shape)
            for slot, length in live:
                knew[slot, :, :length] = kbuf[slot, :, :length]
                vnew[slot, :, :length] = vbuf[slot, :, :length]
            self.kv[index] = (knew, vnew)
        self.finite = [0] * self.slots
        for slot, length in live:
            self.finite[slot] = length
        self.columns = columns

    # -- rows -------------------------------------------------------------------------------

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy slot ``src``'s first ``length`` columns and its state to slot ``dst``."""
        if src == dst:
            return
        for kbuf, vbuf in self.kv.values():
            kbuf[dst, :, :length] = kbuf[src, :, :length]
            vbuf[dst, :, :length] = vbuf[src, :, :length]
        for conv, rec in self.states.values():
            conv[dst] = conv[src]
            rec[dst] = rec[src]
        self.finite[dst] = max(self.finite[dst], length)

    def clear_state(self, slot: int) -> None:
        """A fresh sequence starts from a zero recurrent state."""
        for conv, rec in self.states.values():
            conv[slot].zero_()
            rec[slot].zero_()

    def snapshot_kv(self, slot: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(k[slot, :, :length].clone(), v[slot, :, :length].clone()) for k, v in self.kv.values()]

    def snapshot_state(self, slot: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(c[slot].clone(), r[slot].clone()) for c, r in self.states.values()]

    def restore(
        self,
        slot: int,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        length: int,
        state: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> None:
        """Load a saved prefix of ``length`` tokens into ``slot`` (which has the columns)."""
        for (kbuf, vbuf), (k, v) in zip(self.kv.values(), kv, strict=True):
            kbuf[slot, :, :length] = k[:, :length]
            vbuf[slot, :, :length] = v[:, :length]
        self.finite[slot] = max(self.finite[slot], length)
        if state is None:
            self.clear_state(slot)
            return
        for (conv, rec), (c, r) in zip(self.states.values(), state, strict=True):
            conv[slot] = c
            rec[slot] = r


def mask(positions: torch.Tensor, real: torch.Tensor, width: int, attn: str, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D attention mask ``[rows, 1, q, width]`` of one forward pass.

    A real query at position ``p`` sees columns ``0 .. p`` of its own row; a padding query sees
    column 0 only (never nothing, which would make NaNs that the linear layers would carry on).
    """
    cols = torch.arange(width, device=positions.device)
    allowed = cols[None, None, :] <= positions[:, :, None]
    allowed = torch.where(real[:, :, None], allowed, cols[None, None, :] == 0)
    allowed = allowed[:, None]
    if attn == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    return allowed
