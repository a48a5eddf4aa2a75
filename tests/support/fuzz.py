"""Structurally plausible but wrong requests, and the checks every answer must pass.

A case starts from a *valid* request of one endpoint (``SEEDS``) and applies one to three
mutations at paths inside it: a value of the wrong type, nesting far deeper than any client
sends, numbers at and beyond 64 bits, NUL and other control characters, unusual unicode, a
missing field, an extra field, a list blown up. Used by ``tests/test_fuzz_boundary.py`` (about a
minute) and ``bench/fuzz.py`` (as long as you like).

``check`` asserts what every client depends on: never a 5xx; an error body in the shape of the
endpoint's protocol; every 400 naming the field at fault (or the body as a whole).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

# --------------------------------------------------------------------------- valid requests

CHAT = [
    {"model": "m1", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "m1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 50,
        "temperature": 0.2,
        "stop": ["END"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "what is this"},
                                         {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\": 1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        ],
        "tools": [{"type": "function", "function": {"name": "look", "description": "Look.",
                                                    "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "look"}},
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    },
    {"model": "ma", "messages": [{"role": "developer", "content": "Terse."}, {"role": "user", "content": "hi"}],
     "thinking": {"type": "enabled", "budget_tokens": 100}, "seed": 7, "user": "u1"},
]

MESSAGES = [
    {"model": "m1", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "ma",
        "max_tokens": 2048,
        "stream": True,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "list files"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a b"}]}]},
        ],
        "tools": [{"name": "Bash", "description": "Run.", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "output_config": {"effort": "low"},
        "metadata": {"user_id": "u-1"},
        "temperature": 0.5,
        "top_k": 5,
        "stop_sequences": ["STOP"],
    },
    {"model": "m1", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "document", "title": "t", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}]}],
     "output_format": {"type": "json_schema", "schema": {"type": "object"}}},
]

COUNT_TOKENS = [{k: v for k, v in body.items() if k not in ("max_tokens", "stream")} for body in MESSAGES]

RESPONSES = [
    {"model": "m1", "input": "hi"},
    {
        "model": "mr",
        "instructions": "Be brief.",
        "stream": True,
        "store": True,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "patch it"},
                                         {"type": "input_image", "image_url": "https://example.com/a.png"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
            {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"cmd\": \"ls\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a b"},
            {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "done"}]},
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Run.", "parameters": {"type": "object"}, "strict": False},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "namespace", "name": "mcp", "tools": [{"type": "function", "name": "fetch"}]},
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        "max_output_tokens": 300,
        "parallel_tool_calls": True,
        "metadata": {"k": "v"},
        "prompt_cache_key": "pk",
    },
    {"model": "m1", "input": [{"type": "message", "role": "developer", "content": "x"},
                              {"role": "user", "content": "y"}], "previous_response_id": "resp_missing",
     "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}},
]

ADMIN_USER = {"name": "fuzz-user", "plan": "pro"}
ADMIN_KEY = {"user": "alice", "expires_at": 4102444800.0}


@dataclass(slots=True)
class Case:
    method: str
    path: str
    body: Any  # JSON value, or None for no body
    protocol: str  # "openai" | "anthropic"

    def content(self) -> bytes | None:
        if self.body is None:
            return None
        return json.dumps(self.body, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- mutations


def deep(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"d": value}
    return value


WEIRD_STRINGS = ["", "\x00", "a\x00b", "\x1b[31m", "\u202e\u2066évil😀", "\ud7ff\ue000\uffff", "x" * 5000, " ", "null", "0"]
WEIRD_NUMBERS = [0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64 + 5, -(2**63) - 1, 10**30, 1e308, -1e308, 5e-324, 0.5, -0.0]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(WEIRD_NUMBERS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WEIRD_STRINGS),
    st.text(max_size=20),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
wrong_values = st.one_of(
    json_values,
    st.sampled_from([[], {}, [None], [{}], {"type": {}}, {"": None}]),
    st.integers(60, 300).map(deep),
    st.builds(lambda n: [{"role": "user", "content": "x"}] * n, st.integers(0, 500)),
)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["type", "role", "content", "text", "\x00", "name", "__proto__"]))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path inside ``value`` (not the root itself)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            out.append((*prefix, key))
            out.extend(paths(inner, (*prefix, key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out.append((*prefix, index))
            out.extend(paths(inner, (*prefix, index)))
    return out


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    node = body
    for part in path[:-1]:
        node = node[part]
    return node


BODY_MAX = 24 * 1024 * 1024  # about the JSON size a mutation may grow a body to (the limit is 20 MiB)


def _within(value: Any, budget: int) -> bool:
    """Whether ``value`` encodes to about ``budget`` bytes or less; stops counting past it."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            budget -= len(node) + 2
        elif isinstance(node, dict):
            budget -= 2 + 4 * len(node)
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            budget -= 2 + len(node)
            stack.extend(node)
        else:
            budget -= 8
        if budget < 0:
            return False
    return True


@st.composite
def mutated(draw: Any, seeds: list[Any]) -> Any:
    body = copy.deepcopy(draw(st.sampled_from(seeds)))
    if "model" in body:  # every upstream dialect: m1 chat, ma Anthropic, mr Responses
        body["model"] = draw(st.sampled_from(["m1", "ma", "mr", body["model"]]))
    for _ in range(draw(st.integers(1, 3))):
        spots = paths(body)
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        parent = _parent(body, path)
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "extra", "wrap", "grow"]))
        slot, name = parent, path[-1]  # what this mutation changes, to undo one that is too big
        if kind == "replace":
            value = copy.deepcopy(draw(wrong_values))  # the pools are shared
        elif kind == "delete":
            del parent[name]
            continue
        elif kind == "extra":
            target = parent[name] if isinstance(parent[name], dict) else parent
            if not isinstance(target, dict):
                continue
            value = draw(json_values)  # (drawn in the order they always were)
            slot, name = target, draw(keys)
        elif kind == "wrap":
            value = draw(st.sampled_from([[parent[name]], {"value": parent[name]}]))
        elif isinstance(parent[name], list) and parent[name]:
            value = parent[name] * draw(st.integers(2, 50))
        else:
            continue
        had, before = (True, slot[name]) if not isinstance(slot, dict) or name in slot else (False, None)
        slot[name] = value
        if not _within(body, BODY_MAX):
            # Values nest the pools' long lists in one another, and a grown list repeats its
            # references: a few such steps made bodies of gigabytes, which only the fuzzer's
            # own JSON encoder noticed (past 10 GB of memory). Bodies over the gateway's limit
            # are still made, up to a little above it.
            if had:
                slot[name] = before
            else:
                del slot[name]
    return body


def inference_cases() -> st.SearchStrategy[Case]:
    return st.one_of(
        mutated(CHAT).map(lambda b: Case("POST", "/v1/chat/completions", b, "openai")),
        mutated(MESSAGES).map(lambda b: Case("POST", "/v1/messages", b, "anthropic")),
        mutated(COUNT_TOKENS).map(lambda b: Case("POST", "/v1/messages/count_tokens", b, "anthropic")),
        mutated(RESPONSES).map(lambda b: Case("POST", "/v1/responses", b, "openai")),
    )


path_texts = st.one_of(st.text(min_size=1, max_size=300), st.sampled_from(WEIRD_STRINGS[1:]))


def admin_cases() -> st.SearchStrategy[Case]:
    def unique_user(body: Any, n: int) -> Any:
        if isinstance(body, dict) and body.get("name") == ADMIN_USER["name"]:
            body["name"] = f"fuzz-{n}"
        return body

    return st.one_of(
        st.builds(unique_user, mutated([ADMIN_USER]), st.integers(0, 2**40)).map(
            lambda b: Case("POST", "/admin/users", b, "openai")
        ),
        mutated([ADMIN_KEY]).map(lambda b: Case("POST", "/admin/keys", b, "openai")),
        path_texts.map(lambda t: Case("GET", "/admin/keys?user=" + quote(t, safe=""), None, "openai")),
        path_texts.map(lambda t: Case("GET", "/admin/usage?user=" + quote(t, safe=""), None, "openai")),
        path_texts.map(lambda t: Case("DELETE", "/admin/keys/" + quote(t, safe=""), None, "openai")),
        path_texts.map(lambda t: Case("GET", "/v1/responses/" + quote(t, safe=""), None, "openai")),
        path_texts.map(lambda t: Case("DELETE", "/v1/responses/" + quote(t, safe=""), None, "openai")),
    )


# --------------------------------------------------------------------------- checks

# "messages.0.role: ...", "tools[2].name: ...", 'metadata["a b"]: ...', "input[0].d.d...: ..."
_PATH = re.compile(r'^(?:[A-Za-z_][\w-]*|\[\d+\]|\.\d+|\.[A-Za-z_][\w-]*|\[".*?"\])+(?:\.\.\.)?: ')
_UPSTREAM = re.compile(r"^\S+ answered 4\d\d")  # the provider's own refusal, passed on


def names_a_field(message: str, param: Any) -> bool:
    if _UPSTREAM.match(message):
        return True
    return bool(param) or bool(_PATH.match(message)) or "request body" in message.lower()


def check(case: Case, status: int, content_type: str, body: bytes) -> None:
    """What every answer must be; raises ``AssertionError`` saying what was wrong."""
    where = f"{case.method} {case.path} -> {status}: {body[:300]!r}"
    assert status < 500, where
    if status < 400:
        return
    assert content_type.startswith("application/json"), where
    data = json.loads(body)
    if case.protocol == "anthropic":
        assert data.get("type") == "error", where
        error = data["error"]
        assert isinstance(error.get("type"), str) and isinstance(error.get("message"), str), where
        param = None
    else:
        error = data["error"]
        assert {"message", "type", "param", "code"} <= set(error), where
        assert isinstance(error["message"], str) and isinstance(error["type"], str), where
        param = error["param"]
    if status == 400:
        assert names_a_field(error["message"], param), where
