"""Deterministic request bodies: small requests, a coding-agent request and Claude-Code-shaped
requests of ~1, ~15 and ~60 KB, in OpenAI Chat Completions and in Anthropic Messages.

Why the agent request: a gateway's per-request cost is dominated by parsing, validating and
re-serialising the body. "hi" hides that; a coding agent sends ~30 KB on every turn (a long
system prompt, the conversation so far with tool calls and tool results, a dozen tool schemas).
The body is generated from a fixed seed so every run and every gateway sees the same bytes.
The Claude-Code-shaped bodies (`cc1k`, `cc15k`, `cc60k`) are one conversation rendered in both
protocols - a system prompt, up to 15 tools with JSON schemas, a history of tool_use /
tool_result turns - so the same request measured at three sizes shows how a gateway's parse
and serialise cost grows with the body.
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


def small_messages_request(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        body["stream"] = True
    return body


# Claude Code's tools: (name, description, {property: (JSON type, extra schema)}).
_CC_TOOLS: list[tuple[str, str, dict[str, tuple[str, dict[str, Any]]]]] = [
    ("Task", "Launch a sub-agent for a multi-step task.", {
        "description": ("string", {}), "prompt": ("string", {}),
        "subagent_type": ("string", {"enum": ["general-purpose", "explore", "plan"]})}),
    ("Bash", "Run a shell command in a persistent session.", {
        "command": ("string", {}), "timeout": ("number", {"maximum": 600000}),
        "description": ("string", {}), "run_in_background": ("boolean", {})}),
    ("Glob", "Find files by glob pattern.", {"pattern": ("string", {}), "path": ("string", {})}),
    ("Grep", "Search file contents with a regular expression.", {
        "pattern": ("string", {}), "path": ("string", {}), "glob": ("string", {}),
        "output_mode": ("string", {"enum": ["content", "files_with_matches", "count"]}),
        "-i": ("boolean", {}), "-n": ("boolean", {}), "head_limit": ("number", {})}),
    ("ExitPlanMode", "Leave plan mode with a plan for the user.", {"plan": ("string", {})}),
    ("Read", "Read a file from the local filesystem.", {
        "file_path": ("string", {}), "offset": ("number", {}), "limit": ("number", {})}),
    ("Edit", "Replace an exact string in a file.", {
        "file_path": ("string", {}), "old_string": ("string", {}), "new_string": ("string", {}),
        "replace_all": ("boolean", {"default": False})}),
    ("MultiEdit", "Several edits to one file at once.", {
        "file_path": ("string", {}),
        "edits": ("array", {"items": {"type": "object", "properties": {
            "old_string": {"type": "string"}, "new_string": {"type": "string"},
            "replace_all": {"type": "boolean"}}, "required": ["old_string", "new_string"]}})}),
    ("Write", "Write a file to the local filesystem.", {
        "file_path": ("string", {}), "content": ("string", {})}),
    ("NotebookEdit", "Replace a cell of a Jupyter notebook.", {
        "notebook_path": ("string", {}), "cell_id": ("string", {}), "new_source": ("string", {}),
        "cell_type": ("string", {"enum": ["code", "markdown"]}),
        "edit_mode": ("string", {"enum": ["replace", "insert", "delete"]})}),
    ("WebFetch", "Fetch a URL and answer a prompt about it.", {
        "url": ("string", {"format": "uri"}), "prompt": ("string", {})}),
    ("TodoWrite", "Create and update the session's task list.", {
        "todos": ("array", {"items": {"type": "object", "properties": {
            "content": {"type": "string"}, "id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]}},
            "required": ["content", "status", "id"]}})}),
    ("WebSearch", "Search the web.", {
        "query": ("string", {"minLength": 2}),
        "allowed_domains": ("array", {"items": {"type": "string"}}),
        "blocked_domains": ("array", {"items": {"type": "string"}})}),
    ("BashOutput", "Read output from a background shell.", {
        "bash_id": ("string", {}), "filter": ("string", {})}),
    ("KillShell", "Kill a background shell.", {"shell_id": ("string", {})}),
]

# Per size: (system prompt paragraphs, tools, sentences per tool description, history turns,
# lines of tool output per turn). Chosen so the OpenAI rendering is ~1, ~15 and ~60 KB.
_CC_SHAPES = {"cc1k": (0, 1, 1, 0, 0), "cc15k": (4, 15, 2, 2, 16), "cc60k": (20, 15, 4, 12, 46)}


def _cc_schema(props: dict[str, tuple[str, dict[str, Any]]], rng: random.Random
               ) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {k: {"type": t, "description": _sentence(rng, 9), **extra}
                           for k, (t, extra) in props.items()},
            "required": list(props)[:2]}


def _cc_conversation(size: str) -> dict[str, Any]:
    """The protocol-neutral conversation the two renderings share."""
    paragraphs, n_tools, tool_sentences, turns, out_lines = _CC_SHAPES[size]
    rng = random.Random(20251202)
    system = ["You are Claude Code, Anthropic's official CLI for Claude.",
              "You are an interactive CLI tool that helps users with software engineering "
              "tasks. " + " ".join(_paragraph(rng, 6) for _ in range(paragraphs))]
    tools = [(name, desc + " " + _paragraph(rng, tool_sentences), _cc_schema(props, rng))
             for name, desc, props in _CC_TOOLS[:n_tools]]
    history = []
    for turn in range(turns):
        name = ("Read", "Grep", "Bash", "Edit")[turn % 4]
        history.append({
            "ask": _paragraph(rng, 2), "say": _sentence(rng, 14), "tool": name,
            "id": f"toolu_01{turn:022d}", "input": {"file_path": f"/repo/src/module_{turn}.py",
                                                    "pattern": rng.choice(_WORDS[:10])},
            "result": _code(rng, out_lines)})
    return {"system": system, "tools": tools, "history": history, "ask": _paragraph(rng, 2)}


def cc_messages_request(size: str, stream: bool) -> dict[str, Any]:
    """The conversation as Claude Code sends it to /v1/messages."""
    conv = _cc_conversation(size)
    messages: list[dict[str, Any]] = []
    for h in conv["history"]:
        if not messages:
            messages.append({"role": "user", "content": [{"type": "text", "text": h["ask"]}]})
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": h["say"]},
            {"type": "tool_use", "id": h["id"], "name": h["tool"], "input": h["input"]}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": h["id"], "content": h["result"]}]})
    messages.append({"role": "user", "content": [{"type": "text", "text": conv["ask"],
                                                   "cache_control": {"type": "ephemeral"}}]})
    body: dict[str, Any] = {
        "model": MODEL, "max_tokens": 32000, "temperature": 1,
        "system": [{"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}
                   for t in conv["system"]],
        "messages": messages,
        "tools": [{"name": n, "description": d, "input_schema": s} for n, d, s in conv["tools"]],
        "metadata": {"user_id": "user_bench_account_session_0001"},
    }
    if stream:
        body["stream"] = True
    return body


def cc_chat_request(size: str, stream: bool) -> dict[str, Any]:
    """The same conversation as an OpenAI Chat Completions request."""
    conv = _cc_conversation(size)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(conv["system"])}]
    for h in conv["history"]:
        if len(messages) == 1:
            messages.append({"role": "user", "content": h["ask"]})
        messages.append({"role": "assistant", "content": h["say"], "tool_calls": [{
            "id": h["id"], "type": "function",
            "function": {"name": h["tool"], "arguments": json.dumps(h["input"])}}]})
        messages.append({"role": "tool", "tool_call_id": h["id"], "content": h["result"]})
    messages.append({"role": "user", "content": conv["ask"]})
    body: dict[str, Any] = {
        "model": MODEL, "max_tokens": 32000, "temperature": 1, "messages": messages,
        "tools": [{"type": "function", "function": {"name": n, "description": d, "parameters": s}}
                  for n, d, s in conv["tools"]],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


PROTOCOLS = ("openai", "anthropic")
CC_SIZES = tuple(_CC_SHAPES)
# (protocol, size) -> builder(stream). "agent" exists in OpenAI's dialect only.
BUILDERS: dict[tuple[str, str], Any] = {
    ("openai", "small"): small_request,
    ("openai", "agent"): agent_request,
    ("anthropic", "small"): small_messages_request,
    **{("openai", s): (lambda stream, s=s: cc_chat_request(s, stream)) for s in CC_SIZES},
    **{("anthropic", s): (lambda stream, s=s: cc_messages_request(s, stream)) for s in CC_SIZES},
}


def write_bodies(directory: Path) -> dict[tuple[str, str, str], Path]:
    """Write every (protocol, size, mode) body to directory; mode is "json" or "stream"."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[tuple[str, str, str], Path] = {}
    for (protocol, size), make in BUILDERS.items():
        for mode in ("json", "stream"):
            path = directory / f"{protocol}-{size}-{mode}.json"
            path.write_text(json.dumps(make(mode == "stream"), separators=(",", ":")))
            paths[(protocol, size, mode)] = path
    return paths


def body_kb(bodies: dict[tuple[str, str, str], Path]) -> dict[str, float]:
    """Size of each non-streamed body in KB, keyed "protocol/size", for the report."""
    return {f"{p}/{s}": round(path.stat().st_size / 1024, 1)
            for (p, s, m), path in bodies.items() if m == "json"}
