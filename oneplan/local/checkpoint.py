"""What a checkpoint directory holds, read from its own files before any weights are touched.

Nothing is ever downloaded: the operator names a directory and it must be complete. Everything the
engine needs to know about the model's formats (architecture, chat template, tool-call style,
whether it thinks) comes from the files in it, never from the directory's name. This module uses
no torch, so a broken directory is reported at once, with the path and what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneplan.errors import ConfigError

SUPPORTED_ARCHITECTURES = ("qwen2", "qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_text")
_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    path: Path
    model_type: str
    chat_template: str
    tool_style: str  # "json" (Qwen2.5, Qwen3) or "xml" (Qwen3-Coder, Qwen3.5)
    thinks: bool  # the template knows <think> blocks
    context_length: int
    config: dict[str, Any]


def _fail(path: Path, what: str) -> ConfigError:
    return ConfigError(f"local model checkpoint {str(path)!r}: {what}")


def _read_json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.joinpath(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, f"missing {name}") from None
    except (OSError, ValueError) as exc:
        raise _fail(path, f"cannot read {name}: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(path, f"{name} is not a JSON object")
    return data


def _check_weights(path: Path) -> None:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if path.joinpath(index_name).is_file():
            index = _read_json(path, index_name)
            shards = sorted(set(index.get("weight_map", {}).values()))
            missing = [s for s in shards if not path.joinpath(s).is_file()]
            if missing:
                raise _fail(path, f"incomplete: missing weight shard(s) {', '.join(missing)}")
            if not shards:
                raise _fail(path, f"{index_name} lists no weights")
            return
    if not any(path.joinpath(n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        raise _fail(path, "missing weights (model.safetensors or model.safetensors.index.json)")


def read_chat_template(path: Path) -> str | None:
    """The template a checkpoint ships: ``chat_template.jinja`` or ``tokenizer_config.json``."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config_file = path / "tokenizer_config.json"
    if not config_file.is_file():
        return None
    template = _read_json(path, "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use"}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def tool_style(template: str) -> str:
    """XML (``<function=NAME>``) when the template teaches it, else Qwen's JSON-in-<tool_call>."""
    return "xml" if "<function=" in template else "json"


def inspect(path: str | Path) -> Checkpoint:
    """Validate a checkpoint directory and read its formats; raise one clear ``ConfigError``."""
    root = Path(path).expanduser()
    if not root.exists():
        raise _fail(root, "directory does not exist (local models are never downloaded)")
    if not root.is_dir():
        raise _fail(root, "is not a directory")
    config = _read_json(root, "config.json")
    model_type = str(config.get("model_type", ""))
    if model_type not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(SUPPORTED_ARCHITECTURES)
        raise _fail(root, f"architecture {model_type!r} is not supported (use one of {supported})")
    if not any(all(root.joinpath(f).is_file() for f in group) for group in _TOKENIZER_FILES):
        raise _fail(root, "missing tokenizer (tokenizer.json, or vocab.json and merges.txt)")
    _check_weights(root)
    template = read_chat_template(root)
    if not template:
        raise _fail(root, "missing chat template (chat_template.jinja or tokenizer_config.json)")
    nested = config.get("text_config")
    text_config: dict[str, Any] = nested if isinstance(nested, dict) else config
    context = int(text_config.get("max_position_embeddings") or config.get("max_position_embeddings") or 0)
    return Checkpoint(
        path=root,
        model_type=model_type,
        chat_template=template,
        tool_style=tool_style(template),
        thinks="<think>" in template or "enable_thinking" in template,
        context_length=context or 32768,
        config=config,
    )
