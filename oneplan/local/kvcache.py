"""Row surgery on a transformers ``DynamicCache``, so one cache can hold a changing batch.

Continuous batching needs three operations the cache does not offer as a set: drop finished rows,
merge a freshly prefilled batch into the running one, and cut columns nobody attends to any more.
Attention layers keep ``keys``/``values`` of shape ``[batch, heads, seq, dim]`` (left-padded here;
the padding is masked out); linear-attention layers (Qwen3.5's gated delta net) keep fixed-size
``conv_states``/``recurrent_states`` per row, which only ever need rows selected or concatenated.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _kv(layer: Any) -> bool:
    keys = getattr(layer, "keys", None)
    return isinstance(keys, torch.Tensor) and keys.dim() == 4


def _states(layer: Any) -> list[dict[int, torch.Tensor | None]]:
    found = []
    for name in ("conv_states", "recurrent_states"):
        states = getattr(layer, name, None)
        if isinstance(states, dict):
            found.append(states)
    return found


def select_rows(cache: Any, rows: torch.Tensor) -> None:
    """Keep only ``rows`` (a 1-D index tensor) of every layer, in that order."""
    for layer in cache.layers:
        if _kv(layer):
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)
        for states in _states(layer):
            for key, value in states.items():
                if value is not None:
                    states[key] = value.index_select(0, rows)


def drop_columns(cache: Any, count: int) -> None:
    """Drop the ``count`` oldest sequence positions (columns that are padding in every row)."""
    if count <= 0:
        return
    for layer in cache.layers:
        if _kv(layer):
            layer.keys = layer.keys[:, :, count:, :]
            layer.values = layer.values[:, :, count:, :]


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    return t if width <= 0 else F.pad(t, (0, 0, width, 0))


def merge(running: Any, running_len: int, new: Any, new_len: int) -> None:
    """Append the rows of ``new`` to ``running`` in place, left-padding the shorter to one length."""
    width = max(running_len, new_len)
    for old_layer, new_layer in zip(running.layers, new.layers, strict=True):
        if _kv(old_layer) and _kv(new_layer):
            old_layer.keys = torch.cat(
                [_pad_left(old_layer.keys, width - running_len), _pad_left(new_layer.keys, width - new_len)]
            )
            old_layer.values = torch.cat(
                [
                    _pad_left(old_layer.values, width - running_len),
                    _pad_left(new_layer.values, width - new_len),
                ]
            )
        for old_states, new_states in zip(_states(old_layer), _states(new_layer), strict=True):
            for key, value in new_states.items():
                old = old_states.get(key)
                if value is not None and old is not None:
                    old_states[key] = torch.cat([old, value])


def merge_masks(running: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    width = max(running.shape[1], new.shape[1])
    return torch.cat([F.pad(running, (width - running.shape[1], 0)), F.pad(new, (width - new.shape[1], 0))])
