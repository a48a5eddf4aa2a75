"""A tiny Qwen2 checkpoint whose weights play a ``Script``: the example, fully offline.

Random weights answer noise, and a test cannot reach into ``oneplan serve`` to force tokens, so
this checkpoint is built to follow a multi-turn script by construction. Its greedy output is a
deterministic function of two things the real engine feeds it: the turn (which of the script's
cues appear in the conversation) and the token just written. One decoder layer does it:

* The tokenizer is the tests' tiny Qwen tokenizer (``oneplan.local.tiny``) plus one added token
  per cue and per piece of the scripted answers (a line of a tool call, a sentence), so that
  within one answer no piece repeats.
* Attention finds the turn: the query is constant, a cue's key grows with its position in the
  script, every other key is zero, so softmax picks, of the cues present, the one that comes
  last in the script (``<|im_start|>``, always present, stands for the first turn). Its value writes the turn into the residual.
  The keys use the slowest rotary pair, so positions do not matter.
* The MLP holds one neuron per step of every answer: it fires when both its turn and its previous
  token are in the residual, and writes the next token, which the head turns into a large logit.
  Anything unscripted ends the answer (``<|im_end|>`` has a small constant logit).

The text it writes is each answer in the checkpoint's own tool-call format (JSON inside
``<tool_call>``, or ``<function=...><parameter=...>``; the template chooses, as for real models),
and the engine parses it as it parses a real Qwen's. When the template leaves a ``<think>``
block open, the answer first closes it (empty); with thinking switched off it starts at once.
Run it offline::

    python -m examples.one_sentence_order.scripted /tmp/order-model --format xml
    oneplan serve --local-model /tmp/order-model
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

from examples.one_sentence_order.script import Script, render

THINK_CLOSE = "</think>\n\n"
_SCORE_STEP = 30.0  # attention logit between one cue's turn and the next
_GATE = 20.0  # MLP gate scale: a firing neuron writes ~GATE/2, the others ~0
_HEAD = 5.0  # logit per unit of the scripted next token
_END = 10.0  # the constant logit of <|im_end|>, which ends any unscripted answer


def pieces(text: str) -> list[str]:
    """Lines of ``text``; a line that repeats is joined to the one before it until none does."""
    out = text.splitlines(keepends=True)
    while True:
        repeats = [i for i, piece in enumerate(out) if piece in out[:i]]
        if not repeats:
            return out
        at = repeats[0]
        out[at - 1 : at + 1] = [out[at - 1] + out[at]]


def build_tokenizer(script: Script, style: str) -> tuple[Any, list[list[list[int]]], list[int]]:
    """(tokenizer, each turn's answers as token ids from the prompt's last token to <|im_end|>,
    each turn's cue id). A turn has one answer per way the prompt can end: the template's
    default, and with thinking switched off (an empty ``<think>`` block already closed)."""
    from tokenizers import AddedToken

    from oneplan.local.chat import opens_thinking
    from oneplan.local.tiny import build_tokenizer as tiny_tokenizer

    tok = tiny_tokenizer(style)
    probes = [
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tools=[], add_generation_prompt=True,
                                tokenize=False, **kwargs)
        for kwargs in ({}, {"enable_thinking": False})
    ]
    answers = [pieces(render(turn, style)) for turn in script.turns]
    cues = [t.cue for t in script.turns[1:] if t.cue]
    new = sorted({*cues, THINK_CLOSE, *(p for answer in answers for p in answer)})
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in new])

    def one(text: str) -> int:
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) != 1 or tok.decode(ids) != text:
            raise ValueError(f"{text!r} is not one token of the scripted tokenizer")
        return int(ids[0])

    end = tok.convert_tokens_to_ids("<|im_end|>")
    chains = []
    for answer in answers:
        ids = [one(p) for p in answer]
        turn_chains = []
        for probe in probes:
            head = [one(THINK_CLOSE)] if opens_thinking(probe) else []  # leave the open block empty
            turn_chains.append([tok.encode(probe, add_special_tokens=False)[-1], *head, *ids, end])
        chains.append(turn_chains)
    cue_ids = [tok.convert_tokens_to_ids("<|im_start|>")] + [one(c) for c in cues]
    return tok, chains, cue_ids


def build_scripted_checkpoint(directory: str | Path, script: Script, style: str = "json") -> Path:
    """Write a checkpoint that answers ``script`` in tool-call ``style`` ("json" or "xml")."""
    import torch
    import transformers as tf

    out = Path(directory)
    tok, chains, cue_ids = build_tokenizer(script, style)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    steps: dict[tuple[int, int], int] = {}  # (turn, token just written) -> next token
    for turn, turn_chains in enumerate(chains):
        for chain in turn_chains:
            for before, after in itertools.pairwise(chain):
                if steps.setdefault((turn, before), after) != after:
                    raise ValueError(f"turn {turn} of the script writes the same token twice")
    turns = len(chains)
    known = sorted({t for _turn, t in steps} | set(cue_ids))
    written = sorted(set(steps.values()))
    # Residual layout: constant, filler (any other token), one dim per known token, the turn,
    # the next token.
    ident = {t: 2 + i for i, t in enumerate(known)}
    turn_dim = 2 + len(known)
    next_dim = {t: turn_dim + turns + i for i, t in enumerate(written)}
    hidden = 2 * math.ceil((turn_dim + turns + len(written) + 2) / 2)
    qk = hidden // 2 - 1  # the rotary pair that turns slowest
    config = tf.Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=len(steps),
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1e9},
        eos_token_id=[end, tok.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    model = tf.Qwen2ForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        embed = model.model.embed_tokens.weight
        embed[:, 0] = 1.0
        embed[:, 1] = 1.0
        for token, dim in ident.items():
            embed[token, 1] = 0.0
            embed[token, dim] = 1.0
        layer = model.model.layers[0]
        layer.input_layernorm.weight.fill_(math.sqrt(2 / hidden))  # embeddings come out as 0/1
        attn = layer.self_attn
        attn.q_proj.bias[qk] = 1.0
        for turn, cue in enumerate(cue_ids):
            attn.k_proj.weight[qk, ident[cue]] = (turn + 1) * _SCORE_STEP * math.sqrt(hidden)
            attn.v_proj.weight[turn, ident[cue]] = 1.0
            attn.o_proj.weight[turn_dim + turn, turn] = 1.0
        layer.post_attention_layernorm.weight.fill_(math.sqrt(3 / hidden))
        mlp = layer.mlp
        for neuron, ((turn, before), after) in enumerate(steps.items()):
            mlp.gate_proj.weight[neuron, ident[before]] = _GATE
            mlp.gate_proj.weight[neuron, turn_dim + turn] = _GATE
            mlp.gate_proj.weight[neuron, 0] = -1.5 * _GATE
            mlp.up_proj.weight[neuron, 0] = 1.0
            mlp.down_proj.weight[next_dim[after], neuron] = 1.0
        model.model.norm.weight.fill_(1.0)
        for token, dim in next_dim.items():
            model.lm_head.weight[token, dim] = _HEAD
        model.lm_head.weight[end, 0] = _END
    model.save_pretrained(out)
    tok.save_pretrained(out)
    tf.GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    ).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    from examples.one_sentence_order.orders import happy_path

    parser = argparse.ArgumentParser(
        prog="python -m examples.one_sentence_order.scripted",
        description="Build the scripted tiny Qwen checkpoint that places the example's order.",
    )
    parser.add_argument("directory")
    parser.add_argument("--format", choices=("json", "xml"), default="json")
    args = parser.parse_args(argv)
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = build_scripted_checkpoint(args.directory, happy_path(), args.format)
    print(f"wrote {path}: serve it with  oneplan serve --local-model {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
