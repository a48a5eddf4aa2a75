"""Loading a checkpoint onto a device, with the device and dtype chosen sensibly.

Defaults: CUDA when PyTorch sees a GPU (bfloat16 where the GPU supports it, else float16), Apple's
MPS in float16, otherwise the CPU in float32 (bfloat16 matmuls are only fast on CPUs with AMX or
AVX512-BF16, and on others they are several times slower). The model entry's ``device`` and
``dtype`` options override both. Files are read with ``local_files_only``: nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import torch

from oneplan.errors import ConfigError
from oneplan.local.checkpoint import Checkpoint

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_device(option: str | None) -> torch.device:
    if option in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(str(option))
    except RuntimeError:
        raise ConfigError(
            f"local model option device={option!r} is not a torch device (cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"local model option device={option!r}: PyTorch sees no CUDA GPU")
    return device


def resolve_dtype(option: str | None, device: torch.device) -> torch.dtype:
    if option in (None, "", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    try:
        return _DTYPES[str(option).lower()]
    except KeyError:
        known = ", ".join(sorted(_DTYPES))
        raise ConfigError(f"local model option dtype={option!r} is not one of {known}") from None


def load(checkpoint: Checkpoint, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer), ready for inference. Slow: call it off the event loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(checkpoint.path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"local model checkpoint {path!r} could not be loaded: {exc}") from None
    model.to(device)
    model.eval()
    return model, tokenizer
