"""Packed linear layers (``packing.py``): the engine's model computes what the stock model
computes, with every linear layer in oneDNN's layout, a tied output layer still tied, and models
the kernels do not serve left alone. Greedy answers against the stock model's ``generate`` are
``test_prefix.py``'s."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from oneplan.errors import ConfigError

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from oneplan.local import packing  # noqa: E402  (after the skip: it imports torch)


def stock_model(path: Path) -> Any:
    return tf.AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()


def linears(model: Any) -> list[Any]:
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


def packed(model: Any) -> list[packing.PackedLinear]:
    return [m for m in model.modules() if isinstance(m, packing.PackedLinear)]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "qwen3_moe", "qwen3_5"])
def test_the_engines_model_is_packed_and_computes_the_stock_logits(
    engines: dict[str, Any], checkpoints: dict[str, Path], arch: str
) -> None:
    engine, stock = engines[arch], stock_model(checkpoints[arch])
    assert linears(engine.model) == [] and len(packed(engine.model)) == len(linears(stock)) > 0
    vocab = stock.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), engine.scheduler.paused():  # the worker is not using the model
        got = engine.model(input_ids=ids, use_cache=False).logits
        want = stock(input_ids=ids, use_cache=False).logits
        one_row = engine.model(input_ids=ids[:1, :5], use_cache=False).logits  # other row counts too
        one_want = stock(input_ids=ids[:1, :5], use_cache=False).logits
    fused = [m for m in engine.model.modules() if isinstance(m, packing.FusedRMSNorm)]
    assert bool(fused) == (arch != "qwen3_5")  # Qwen3.5's norms scale by 1 + weight: kept
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), float((got - want).abs().max())
    assert torch.allclose(one_row, one_want, rtol=1e-4, atol=1e-5)
    # The untied weights were replaced, not copied: the engine holds no second copy of them.
    held = {id(p) for p in engine.model.parameters()}
    assert all(not hasattr(m, "weight") or id(m.weight) in held for m in packed(engine.model))
    assert sum(p.numel() for p in engine.model.parameters()) < sum(p.numel() for p in stock.parameters())


def _tiny_tied() -> Any:
    config = tf.Qwen3Config(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(config).eval()


def test_a_tied_output_layer_stays_tied_to_the_embedding() -> None:
    model = _tiny_tied()
    stock = copy.deepcopy(model)
    assert packing.pack(model, rows=8) == len(linears(stock))
    head = model.get_output_embeddings()
    assert isinstance(head, packing.PackedLinear)
    assert head.weight is model.get_input_embeddings().weight
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.allclose(model(input_ids=ids).logits, stock(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_a_model_the_kernels_do_not_serve_is_left_alone() -> None:
    model = _tiny_tied().to(torch.bfloat16)  # oneDNN's fp32 layout only; bf16 stays stock
    before = len(linears(model))
    assert packing.pack(model, rows=8) == 0 and len(linears(model)) == before


def test_packing_is_an_option_of_the_model_entry(checkpoints: dict[str, Path]) -> None:
    from oneplan.local.engine import EngineOptions, LocalEngine
    from oneplan.local.provider import engine_options

    assert engine_options("m", {"path": "/m"}).pack_weights is True
    assert engine_options("m", {"path": "/m", "pack_weights": False}).pack_weights is False
    with pytest.raises(ConfigError, match="pack_weights"):
        engine_options("m", {"path": "/m", "pack_weights": "no"})
    engine = LocalEngine.load(EngineOptions(path=str(checkpoints["qwen3"]), pack_weights=False))
    try:
        assert packed(engine.model) == [] and linears(engine.model)
    finally:
        engine.close()


def test_a_norm_of_another_formula_is_not_fused() -> None:
    class OffsetRMSNorm(torch.nn.Module):  # named like one, with the attributes, but 1 + weight
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(64))
            self.variance_epsilon = 1e-6

        def forward(self, x: Any) -> Any:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon) * (1 + self.weight)

    model = _tiny_tied()
    model.model.norm = OffsetRMSNorm()
    packing.pack(model, rows=8)
    assert isinstance(model.model.norm, OffsetRMSNorm)
    assert isinstance(model.model.layers[0].input_layernorm, packing.FusedRMSNorm)
