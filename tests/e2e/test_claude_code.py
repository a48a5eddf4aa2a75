"""The real Claude Code CLI (``claude -p``) through a real ``oneplan serve``.

Claude Code speaks Anthropic Messages to oneplan; oneplan translates to a Chat Completions
provider (DashScope) or forwards to an Anthropic-compatible one. The fake model asks for Claude
Code's ``Write`` tool, Claude Code writes the file, sends the result back, and prints the final
answer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.agent import AgentUpstream, catalog, isolated_env, ledger_totals, oneplan, tool_schema
from tests.e2e.clis import Installed

CONTENT = "written by Claude Code through oneplan\n"
FINAL = "Done: hello.txt is written."
PROMPT = "Write hello.txt, then say you are done."


def quiet_claude_env(tmp_path: Path, base_url: str, **auth: str) -> dict[str, str]:
    """Claude Code pointed at oneplan, with updates, telemetry and all non-essential traffic off."""
    return isolated_env(
        tmp_path,
        ANTHROPIC_BASE_URL=base_url,
        CLAUDE_CONFIG_DIR=str(tmp_path / "home" / ".claude"),
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        **auth,
    )


CASES = [
    # (provider kind, dialect, fake dialect, --model, auth variable)
    pytest.param("dashscope", None, "dashscope", None, "ANTHROPIC_AUTH_TOKEN", id="openai-dialect-default-model"),
    pytest.param("dashscope", None, "dashscope", "qwen3.5-plus", "ANTHROPIC_API_KEY", id="openai-dialect-model-flag"),
    pytest.param("anthropic-compatible", "anthropic", "anthropic", None, "ANTHROPIC_AUTH_TOKEN", id="anthropic-dialect"),
]


@pytest.mark.parametrize(("kind", "dialect", "fake", "model", "auth_var"), CASES)
def test_claude_code_writes_a_file_through_oneplan(
    tmp_path: Path, clis: Installed, kind: str, dialect: str | None, fake: str, model: str | None, auth_var: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = work / "hello.txt"
    call = {"name": "Write", "arguments": {"file_path": str(target), "content": CONTENT}}
    with AgentUpstream(fake, prompt=PROMPT, tool_call=call, final_text=FINAL) as up, oneplan(tmp_path, catalog(up, kind, dialect=dialect)) as (server, key):
        command = [str(clis.bin("claude")), "-p", PROMPT, "--permission-mode", "acceptEdits"]
        if model:
            command += ["--model", model]
        done = subprocess.run(
            command, cwd=work, env=quiet_claude_env(tmp_path, server.url, **{auth_var: key}),
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"claude exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        totals = ledger_totals(server)

    # The tool really ran, and the final answer is what Claude Code printed.
    assert target.read_text() == CONTENT
    assert FINAL in done.stdout

    # The agent loop reached the provider: the tool call, then the tool's result.
    agent = up.agent_requests
    assert len(agent) >= 2, [r.get("model") for r in up.model_requests]
    assert {body["model"] for body in up.model_requests} <= {"qwen3.5-plus", "qwen3.5-flash"}
    assert all(body["model"] == "qwen3.5-plus" for body in agent)  # claude-* (or --model) -> qwen3.5-plus
    # Claude Code's Write tool arrived in the provider's own shape.
    first = agent[0]
    if fake == "anthropic":
        assert all("input_schema" in tool for tool in first["tools"])
    else:
        assert all(tool["type"] == "function" and "parameters" in tool["function"] for tool in first["tools"])
    schema = tool_schema(first, "Write")
    assert {"file_path", "content"} <= set(schema["properties"])
    assert has_result_of_write(agent[-1], fake)

    # Every request Claude Code made is in the ledger, answered.
    assert totals["requests"] == len(up.model_requests)
    assert totals["input_tokens"] == up.served_tokens.input_tokens
    assert totals["output_tokens"] == up.served_tokens.output_tokens


def has_result_of_write(body: dict, fake: str) -> bool:
    """The last agent request carries Write's result as the provider's own tool-result shape."""
    for message in body["messages"]:
        if fake == "anthropic":
            content = message.get("content")
            if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
                return True
        elif message.get("role") == "tool" and message.get("tool_call_id"):
            return True
    return False
