"""Tiny random Qwen checkpoints, for tests and the throughput benchmark.

No weights can be downloaded, so tests and ``bench/local_throughput.py`` build their own: a small
byte-level BPE tokenizer with Qwen's pre-tokenizer and special tokens, a ChatML chat template with
tools and thinking (JSON tool calls like Qwen2.5/Qwen3, or XML tool calls like Qwen3.5), and a
random model of the named architecture, written with transformers' own ``save_pretrained``. The
loader then reads them exactly as it reads a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARCHITECTURES = ("qwen2", "qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_text")

# Qwen2's pre-tokenizer split pattern (contractions, letters, single digits, punctuation, spaces).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ADDED_TOKENS = (
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)

_SYSTEM_AND_TOOLS = """
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\\n</tools>\\n\\n' }}
{{- TOOL_INSTRUCTIONS }}
{{- '<|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
"""

_JSON_INSTRUCTIONS = (
    "'For each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\\n</tool_call>'"
)
_XML_INSTRUCTIONS = (
    "'If you choose to call a function reply in the following format:\\n<tool_call>\\n"
    "<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1\\n"
    "</parameter>\\n</function>\\n</tool_call>'"
)

_JSON_CALL = """
{{- '<tool_call>\\n{"name": "' + call.function.name + '", "arguments": ' }}
{%- if call.function.arguments is string %}{{- call.function.arguments }}
{%- else %}{{- call.function.arguments | tojson }}{%- endif %}
{{- '}\\n</tool_call>' }}
"""
_XML_CALL = """
{{- '<tool_call>\\n<function=' + call.function.name + '>\\n' }}
{%- for key, value in call.function.arguments | items %}
{{- '<parameter=' + key + '>\\n' }}
{%- if value is string %}{{- value }}{%- else %}{{- value | tojson }}{%- endif %}
{{- '\\n</parameter>\\n' }}
{%- endfor %}
{{- '</function>\\n</tool_call>' }}
"""

_MESSAGES = """
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- if not loop.first %}{{- raise_exception('System message must be at the beginning.') }}{%- endif %}
{%- elif message.role == 'user' %}
{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\\n' }}
{%- if message.reasoning_content %}
{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}
{%- endif %}
{{- message.content or '' }}
{%- for call in message.tool_calls or [] %}
{%- if loop.first and message.content %}{{- '\\n' }}{%- elif not loop.first %}{{- '\\n' }}{%- endif %}
TOOL_CALL
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
"""

# Qwen3 (JSON style): the model opens <think> itself; thinking off pre-fills an empty block.
_JSON_PROMPT = """
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\\n\\n</think>\\n\\n' }}
{%- endif %}
{%- endif %}
"""
# Qwen3.5 (XML style): the prompt itself opens <think>; thinking off pre-fills an empty block.
_XML_PROMPT = """
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\\n\\n</think>\\n\\n' }}
{%- else %}
{{- '<think>\\n' }}
{%- endif %}
{%- endif %}
"""


def chat_template(style: str) -> str:
    """A ChatML template with tools and thinking; ``style`` is ``"json"`` or ``"xml"``."""
    instructions, call, prompt = (
        (_JSON_INSTRUCTIONS, _JSON_CALL, _JSON_PROMPT)
        if style == "json"
        else (_XML_INSTRUCTIONS, _XML_CALL, _XML_PROMPT)
    )
    head = _SYSTEM_AND_TOOLS.replace("TOOL_INSTRUCTIONS", instructions)
    body = _MESSAGES.replace("TOOL_CALL", call.strip())
    return "".join(part.strip() for part in (head, body, prompt))


_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Hello, world! How are you today?",
    "def main():\n    print('hello')\n    return 42\n",
    '{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "metric": true}}',
    "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>",
    "You may call one or more functions to assist with the user query.",
    "I should look up the weather first. Let me think about this step by step.",
    "0123456789 + - * / = ( ) [ ] { } < > ; : , . ! ? ' \" # @ $ % ^ & _ | ~ `",
    "system user assistant tool function parameter arguments name type object string",
]


def build_tokenizer(style: str, vocab_size: int = 600) -> Any:
    """A trained byte-level BPE tokenizer wrapped as a transformers fast tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = chat_template(style)
    return fast


def _config(arch: str, vocab: int, *, hidden: int, layers: int, eos: list[int]) -> Any:
    import transformers as tf

    heads = max(2, hidden // 16)
    common: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "max_position_embeddings": 2048,
        "eos_token_id": eos,
        "pad_token_id": eos[-1],
        "tie_word_embeddings": False,
    }
    if arch == "qwen2":
        return tf.Qwen2Config(**common)
    if arch == "qwen3":
        return tf.Qwen3Config(head_dim=16, **common)
    if arch == "qwen3_moe":
        return tf.Qwen3MoeConfig(  # type: ignore[call-arg]
            head_dim=16,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=hidden,
            **common,
        )
    text: dict[str, Any] = dict(
        common,
        head_dim=16,
        linear_conv_kernel_dim=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        layer_types=(["linear_attention"] * (layers - 1) + ["full_attention"]),
    )
    if arch == "qwen3_5_text":
        return tf.Qwen3_5TextConfig(**text)
    if arch == "qwen3_5":
        vision = {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "num_position_embeddings": 64,
        }
        return tf.Qwen3_5Config(text_config=text, vision_config=vision)
    raise ValueError(f"unknown architecture {arch!r}")


def build_checkpoint(
    directory: str | Path,
    arch: str,
    *,
    hidden: int = 64,
    layers: int = 2,
    vocab_size: int = 600,
    seed: int = 0,
) -> Path:
    """Write a random ``arch`` checkpoint with tokenizer and chat template into ``directory``."""
    import torch
    import transformers as tf

    out = Path(directory)
    style = "xml" if arch.startswith("qwen3_5") else "json"
    tokenizer = build_tokenizer(style, vocab_size)
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    config = _config(arch, len(tokenizer), hidden=hidden, layers=max(layers, 2), eos=eos)
    torch.manual_seed(seed)
    if arch == "qwen3_5":
        model = tf.Qwen3_5ForConditionalGeneration(config)
    else:
        model = tf.AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    tf.GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=eos, pad_token_id=eos[-1], do_sample=False
    ).save_pretrained(out)
    return out
