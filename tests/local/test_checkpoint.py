"""A broken checkpoint or a missing extra is one clear error that says what to do."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oneplan.errors import ConfigError
from oneplan.local.checkpoint import inspect
from oneplan.local.provider import LocalProvider
from oneplan.protocols.canonical import ChatRequest
from oneplan.providers.base import ProviderSettings, Target, provider_class


def provider() -> LocalProvider:
    return LocalProvider(ProviderSettings(name="local", kind="local", base_url=""))


def request() -> ChatRequest:
    return ChatRequest(model="tiny", messages=[{"role": "user", "content": "hi"}])


def copy_without(src: Path, dst: Path, *missing: str) -> Path:
    shutil.copytree(src, dst)
    for name in missing:
        dst.joinpath(name).unlink()
    return dst


def test_registered_as_kind_local() -> None:
    assert provider_class("local") is LocalProvider


def test_importing_the_provider_loads_no_torch() -> None:
    code = "import sys, oneplan.local.provider; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_says_which_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what an install without the extra looks like
    target = Target(model="tiny", upstream="tiny", options={"path": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"pip install 'oneplan\[local\]'"):
        asyncio.run(provider().complete(request(), target))


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    gone = tmp_path / "Qwen3-4B"
    target = Target(model="tiny", upstream="tiny", options={"path": str(gone)})
    with pytest.raises(ConfigError, match=r"Qwen3-4B.*does not exist"):
        asyncio.run(provider().preload(target))


def test_path_is_required() -> None:
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="needs path"):
        asyncio.run(provider().preload(Target(model="tiny", upstream="tiny")))


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("model.safetensors", "missing weights"),
        ("tokenizer.json", "missing tokenizer"),
        ("chat_template.jinja", "missing chat template"),
        ("config.json", "missing config.json"),
    ],
)
def test_incomplete_directory_says_what_is_missing(
    checkpoints: dict[str, Path], tmp_path: Path, missing: str, message: str
) -> None:
    broken = copy_without(checkpoints["qwen3"], tmp_path / "broken", missing)
    with pytest.raises(ConfigError, match=f"{re.escape(str(broken))}.*{message}"):
        inspect(broken)


def test_missing_shard_is_named(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    broken = copy_without(checkpoints["qwen3"], tmp_path / "sharded", "model.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    broken.joinpath("model.safetensors.index.json").write_text(json.dumps(index))
    broken.joinpath("model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"missing weight shard.*model-00002-of-00002"):
        inspect(broken)


def test_unsupported_architecture(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    other = copy_without(checkpoints["qwen2"], tmp_path / "llama")
    config = json.loads(other.joinpath("config.json").read_text())
    other.joinpath("config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ConfigError, match="'llama' is not supported"):
        inspect(other)


def test_formats_come_from_the_checkpoint(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    styles = {arch: inspect(path).tool_style for arch, path in checkpoints.items()}
    assert styles == {
        "qwen2": "json",
        "qwen3": "json",
        "qwen3_moe": "json",
        "qwen3_5": "xml",
        "qwen3_5_text": "xml",
    }
    # The directory's name means nothing: a Qwen3.5-named copy of a JSON-style checkpoint is JSON.
    renamed = copy_without(checkpoints["qwen3"], tmp_path / "Qwen3.5-2B")
    assert inspect(renamed).tool_style == "json"


def test_template_in_tokenizer_config_is_found(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    moved = copy_without(checkpoints["qwen3_5"], tmp_path / "old-style", "chat_template.jinja")
    template = checkpoints["qwen3_5"].joinpath("chat_template.jinja").read_text()
    config_file = moved / "tokenizer_config.json"
    config: dict[str, Any] = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "chat_template": template}))
    assert inspect(moved).tool_style == "xml"


def test_preload_then_complete(checkpoints: dict[str, Path]) -> None:
    local = provider()
    target = Target(
        model="tiny", upstream="tiny", options={"path": str(checkpoints["qwen2"]), "dtype": "float32"}
    )

    async def run() -> Any:
        await local.preload(target)
        try:
            req = ChatRequest(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
            return await local.complete(req, target)
        finally:
            await local.aclose()

    result = asyncio.run(run())
    assert result.model == "tiny" and result.usage.output_tokens == 3 and result.finish_reason == "length"
