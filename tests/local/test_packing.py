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
from tests.local.helpers import reference, run, stock_model  # noqa: E402


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


def test_a_layer_of_another_dtype_stays_as_it_is() -> None:
    model = _tiny_tied()
    model.model.layers[0].mlp.down_proj.to(torch.float64)  # oneDNN refuses float64 weights
    assert packing.pack(model, rows=8) == len(linears(_tiny_tied())) - 1
    assert type(model.model.layers[0].mlp.down_proj) is torch.nn.Linear
    assert isinstance(model.model.layers[1].mlp.down_proj, packing.PackedLinear)


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


@pytest.mark.parametrize(
    ("shape", "kernels"),
    [((128, 96), {"mkl"}), ((512, 768), {"mkl", "onednn"}), ((1024, 1536), {"onednn"})],
)
@pytest.mark.parametrize("bias", [False, True])
def test_each_kernel_computes_the_linear_layer(shape: tuple[int, int], kernels: set[str], bias: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(shape[1], shape[0], bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(*shape, generator=generator) / 30)
    layer = packing.PackedLinear(linear, rows=8)
    held = {name for name, kept in (("onednn", layer.packed), ("mkl", layer.transposed)) if kept is not None}
    assert held == kernels
    with torch.inference_mode():
        for rows in ((1, 1), (8, 1), (8,), (2, 300)):  # a decode of one row, of 8, flat, a prefill
            x = torch.randn(*rows, shape[1], generator=generator)
            got, want = layer(x), linear(x)
            assert got.shape == want.shape
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (rows, float((got - want).abs().max()))


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])  # qwen2's projections carry a bias
def test_greedy_answers_equal_generate_where_onednn_serves_the_layers(tmp_path: Path, arch: str) -> None:
    from oneplan.local.engine import EngineOptions, LocalEngine
    from oneplan.local.tiny import build_checkpoint
    from oneplan.protocols.canonical import ChatRequest

    path = build_checkpoint(tmp_path / arch, arch, hidden=512)  # weights of 2^18 elements and up
    engine = LocalEngine.load(EngineOptions(path=str(path), max_batch_size=8, admission_window_ms=50.0))
    try:
        held = [m.packed is not None for m in packed(engine.model)]
        assert any(held)  # oneDNN serves these layers (for 4 rows or more) ...
        asks = [ChatRequest(model="t", messages=[{"role": "user", "content": f"q {i} " * (i + 1)}]) for i in range(8)]
        prompts = [engine.prepare(request).ids for request in asks]
        expected = [reference(engine, ids, 12) for ids in prompts]
        for group in ([prompts[0]], prompts):  # ... alone (MKL for one row) and eight together
            seqs = run(engine, [(ids, f"{arch}-{len(group)}-{i}") for i, ids in enumerate(group)], tokens=12)
            assert [s.generated for s in seqs] == expected[: len(group)]
        assert engine.scheduler.decode_batch_sizes[8] > 0
    finally:
        engine.close()
