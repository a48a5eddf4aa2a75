"""Deterministic request bodies: a small chat request and a realistic coding-agent request.

Why the agent request: a gateway's per-request cost is dominated by parsing, validating and
re-serialising the body. "hi" hides that; a coding agent sends ~30 KB on every turn (a long
system prompt, the conversation so far with tool calls and tool results, a dozen tool schemas).
The body is generated from a fixed seed so every run and every gateway sees the same bytes.
No key named "stream" appears inside the body (the fake upstream detects streaming by key).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

MODEL = "bench-model"

_WORDS = (
    "the repository module function test change file error type value config request handler "
    "client server stream token plan user key quota window budget ledger provider model route "
    "retry fallback cache parse render canonical message tool call result schema field check "
    "always never should must prefer keep small typed explain why minimal diff review commit"
).split()

_TOOLS: list[tuple[str, str, dict[str, str]]] = [
    ("read_file", "Read a file from the workspace.", {"path": "string", "offset": "integer",
                                                       "limit": "integer"}),
    ("write_file", "Create or overwrite a file.", {"path": "string", "content": "string"}),
    ("edit_file", "Replace an exact string in a file.", {"path": "string", "old": "string",
                                                          "new": "string"}),
    ("list_directory", "List a directory.", {"path": "string", "depth": "integer"}),
    ("search_code", "Search the code by regular expression.", {"pattern": "string",
                                                               "glob": "string"}),
    ("run_shell", "Run a shell command.", {"command": "string", "timeout_s": "integer"}),
    ("run_tests", "Run the test suite or a subset.", {"selector": "string"}),
    ("git_diff", "Show the working tree diff.", {"paths": "string"}),
    ("git_log", "Show recent commits.", {"count": "integer"}),
    ("web_fetch", "Fetch a documentation page.", {"url": "string"}),
    ("ask_user", "Ask the user a question.", {"question": "string"}),
    ("todo_write", "Update the task list.", {"items": "string"}),
]


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng, rng.randint(8, 18)) for _ in range(sentences))


def _code(rng: random.Random, lines: int) -> str:
    out = []
    for i in range(lines):
        a, b = rng.choice(_WORDS), rng.choice(_WORDS)
        out.append(f"{'    ' * (i % 3)}def {a}_{b}_{i}(value: int) -> int:  # {a} {b}")
    return "\n".join(out)


def _tool(name: str, description: str, params: dict[str, str], rng: random.Random
          ) -> dict[str, Any]:
    props = {p: {"type": t, "description": _sentence(rng, 10)} for p, t in params.items()}
    return {"type": "function", "function": {
        "name": name, "description": description + " " + _paragraph(rng, 3),
        "parameters": {"type": "object", "properties": props, "required": list(params)[:1]},
    }}


def small_request(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def agent_request(stream: bool) -> dict[str, Any]:
    """~30 KB: system prompt, 5 tool-using turns of history, 12 tools."""
    rng = random.Random(20240601)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding agent. " + _paragraph(rng, 55)},
        {"role": "user", "content": _paragraph(rng, 4)},
    ]
    for turn in range(5):
        call_id = f"call_{turn:04d}"
        name = _TOOLS[turn % len(_TOOLS)][0]
        messages.append({"role": "assistant", "content": _sentence(rng, 12), "tool_calls": [{
            "id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps({"path": f"src/mod_{turn}.py"})},
        }]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _code(rng, 50)})
    messages.append({"role": "user", "content": _paragraph(rng, 3)})
    body: dict[str, Any] = {
        "model": MODEL, "max_tokens": 4096, "temperature": 0.2, "messages": messages,
        "tools": [_tool(n, d, p, rng) for n, d, p in _TOOLS], "tool_choice": "auto",
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


SIZES = {"small": small_request, "agent": agent_request}


def write_bodies(directory: Path) -> dict[tuple[str, str], Path]:
    """Write every (size, mode) body to directory; mode is "json" or "stream"."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[tuple[str, str], Path] = {}
    for size, make in SIZES.items():
        for mode in ("json", "stream"):
            path = directory / f"{size}-{mode}.json"
            path.write_text(json.dumps(make(mode == "stream"), separators=(",", ":")))
            paths[(size, mode)] = path
    return paths
