"""A float32 CPU model's linear layers with their weights laid out once for the matrix kernels,
and its RMSNorms fused.

On the CPU, ``nn.Linear`` calls MKL's ``sgemm`` on ``W.T``, which copies the weight into its
blocked layout on every call. A decode step multiplies a few rows (one per running stream) by
every weight, so that copy costs as much as the product itself. oneDNN can reorder a weight into
its kernel's layout once (``mkldnn._reorder_linear_weight``) and multiply against it from then on
(``mkldnn._linear_pointwise``, what PyTorch's own compiler emits for a linear layer on the CPU).
Measured on this machine (2 AMD EPYC cores, AVX2, fp32): 8 rows x 1024 -> 3072 went from 3.1 ms to
0.81 ms, one row from 0.75 to 0.33 ms, and a 256-token prefill chunk from 22 to 18.5 ms. oneDNN's
call has a fixed cost (~45 us), so small weights go to MKL instead, transposed once
(``PackedLinear`` says which weight gets which).

``pack(model, rows)`` swaps every ``nn.Linear`` for a ``PackedLinear`` (``rows``: the rows a call
usually has, the decode batch) and every RMSNorm of the plain formula for PyTorch's fused
``rms_norm`` (seven small operators, four norms a layer). The model's own forward code is
untouched: only what it calls changes. The results are not bit-identical to stock transformers
(another summation order: a few parts in a million), so greedy answers equal transformers'
``generate`` wherever two top logits are not within that of each other, like any change of
kernel or thread count.

A packed weight replaces the layer's ``weight``, except where the weight is shared (an output
layer tied to the embedding), which then costs one extra copy; a mid-sized weight is held in both
layouts. MoE experts are not linear layers (transformers keeps them as 3-D tensors) and stay as
they are. Where the operators are missing or give a wrong answer on a probe, nothing is packed;
a layer whose weight is not float32, or that the kernel refuses, stays as it is.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger("oneplan.local")


MID = 1 << 18  # weights of at least this many elements get oneDNN's layout ...
BIG = 1 << 20  # ... and from this many, only that: it wins at every row count
FEW_ROWS = 4  # below this many rows, a mid-sized weight goes through MKL (oneDNN's call costs ~45 us)


class PackedLinear(torch.nn.Module):
    """``nn.Linear`` with its weight laid out for the kernels that serve its size; same call,
    same output shape.

    Per call, oneDNN's ``_linear_pointwise`` costs ~45 us before any arithmetic, so it pays only
    for large products. A weight of at least ``BIG`` elements is kept in oneDNN's layout only
    (one row times 1024 x 3072: 0.36 ms against MKL's 0.74); one below ``MID`` is kept transposed
    and contiguous for MKL (``x @ W.T`` with the transpose made once: 8 rows times 384 x 128, 25
    against 31 us); one in between keeps both, and each call takes oneDNN's for ``FEW_ROWS`` rows
    or more (8 rows times 1024 -> 384: 125 us against 268) and MKL's for fewer (1 row: 42 against
    73).
    """

    def __init__(self, linear: torch.nn.Linear, rows: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        size = weight.numel()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows) if size >= MID else None
        self.transposed = weight.t().contiguous() if size < BIG else None
        self.few = FEW_ROWS * self.in_features  # input elements below which MKL's is used
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and (self.transposed is None or x.numel() >= self.few):
            out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
            return out
        assert self.transposed is not None
        out = torch.matmul(x, self.transposed)
        return out if self.bias is None else out.add_(self.bias)


class FusedRMSNorm(torch.nn.Module):
    """transformers' ``RMSNorm`` (``x * rsqrt(mean(x^2) + eps) * weight``, seven operators) as
    PyTorch's one fused ``rms_norm``; the same weight parameter."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.weight, self.eps = weight, eps
        self.shape = (int(weight.shape[-1]),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.rms_norm(x, self.shape, self.weight, self.eps)


def _fusable_norm(module: torch.nn.Module, verdicts: dict[type, bool]) -> bool:
    """An RMSNorm of the plain formula: named so, with a 1-D ``weight`` and ``variance_epsilon``,
    and computing what the fused one does on a probe (checked once per class). Qwen3.5's norms
    (``1 + weight``, gated) fail the probe and stay."""
    kind = type(module)
    weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
    if not kind.__name__.endswith("RMSNorm") or not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        return False
    if not isinstance(eps, float):
        return False
    if kind not in verdicts:
        x = torch.randn(3, 5, weight.shape[0], generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            verdicts[kind] = torch.allclose(module(x), FusedRMSNorm(weight, eps)(x), rtol=1e-5, atol=1e-6)
    return verdicts[kind]


def supported(model: Any) -> bool:
    """A float32 model on the CPU, with PyTorch's oneDNN operators present."""
    if getattr(model, "device", None) is None or model.device.type != "cpu" or model.dtype != torch.float32:
        return False
    available: Any = torch.backends.mkldnn.is_available  # untyped in torch
    if not available():
        return False
    return hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _probe(rows: int) -> bool:
    """oneDNN's reordered product against ``F.linear`` on a small weight: the operators exist
    here and agree (both of ``PackedLinear``'s kernels are then plain PyTorch or this one)."""
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(48, 64, generator=generator), torch.randn(48, generator=generator)
    x = torch.randn(3, rows, 64, generator=generator)
    with torch.inference_mode():
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
            got = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        except (RuntimeError, NotImplementedError) as exc:
            log.info("linear layers not packed: oneDNN's packed product fails here (%s)", exc)
            return False
        want = torch.nn.functional.linear(x, weight, bias)
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
        log.info("linear layers not packed: oneDNN's packed product disagrees with F.linear here")
        return False
    return True


def pack(model: Any, rows: int) -> int:
    """Swap ``model``'s linear layers for packed ones and its plain RMSNorms for the fused one, in
    place; how many linear layers were swapped."""
    if not supported(model) or not _probe(rows):
        return 0
    shared = _shared_weights(model)
    swapped = 0
    verdicts: dict[type, bool] = {}
    with torch.inference_mode():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:  # subclasses may do more than x @ W.T + b
                    if child.weight.dtype != torch.float32:  # a layer a checkpoint keeps in another dtype
                        continue
                    try:
                        packed = PackedLinear(child, rows)
                    except (RuntimeError, NotImplementedError) as exc:  # a shape the kernel refuses
                        log.info("linear layer %s kept as it is: %s", name, exc)
                        continue
                    if id(child.weight) in shared:
                        packed.weight = child.weight  # still the embedding's: kept, not a copy
                    setattr(parent, name, packed)
                    swapped += 1
                elif _fusable_norm(child, verdicts):
                    setattr(parent, name, FusedRMSNorm(child.weight, child.variance_epsilon))
    return swapped


def _shared_weights(model: Any) -> set[int]:
    """Parameters held by more than one module (a tied output layer's weight)."""
    seen: dict[int, int] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            seen[id(param)] = seen.get(id(param), 0) + 1
    return {key for key, count in seen.items() if count > 1}
