"""The real Codex CLI (``codex exec``) through a real ``oneplan serve``.

Codex speaks OpenAI Responses to oneplan (a custom model provider in a fresh ``CODEX_HOME``);
oneplan translates to a Chat Completions provider. The fake model asks for Codex's shell tool
(``exec_command`` in this version), Codex runs the command that writes the file, sends the output
back, and prints the final answer.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.agent import AgentUpstream, catalog, isolated_env, ledger_totals, oneplan, tool_schema
from tests.e2e.clis import Installed

FINAL = "Done: codex.txt is written."
LINE = "written by Codex through oneplan"
PROMPT = "Write codex.txt with a shell command, then say you are done."


def codex_home(tmp_path: Path, base_url: str, model: str) -> Path:
    """A fresh CODEX_HOME whose config.toml sends Codex to oneplan, with updates, analytics,
    feedback and OpenTelemetry export off, and commands allowed without a sandbox."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""
model = "{model}"
model_provider = "oneplan"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.oneplan]
name = "oneplan"
base_url = "{base_url}/v1"
env_key = "ONEPLAN_API_KEY"
wire_api = "responses"

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[history]
persistence = "none"
"""
    )
    return home


@pytest.mark.parametrize("kind", ["dashscope", "openai-compatible"])
def test_codex_runs_a_command_through_oneplan(tmp_path: Path, clis: Installed, kind: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = work / "codex.txt"
    call = {"name": "exec_command", "arguments": {"cmd": f"echo '{LINE}' > codex.txt"}}
    fake = "dashscope" if kind == "dashscope" else "openai"
    with AgentUpstream(fake, prompt=PROMPT, tool_call=call, final_text=FINAL) as up, oneplan(tmp_path, catalog(up, kind)) as (server, key):
        env = isolated_env(tmp_path, CODEX_HOME=str(codex_home(tmp_path, server.url, "qwen3.5-plus")), ONEPLAN_API_KEY=key)
        done = subprocess.run(
            [str(clis.bin("codex")), "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral",
             PROMPT],
            cwd=work, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"codex exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        totals = ledger_totals(server)

    # The command really ran, and Codex printed the final answer on stdout.
    assert target.read_text() == LINE + "\n"
    assert FINAL in done.stdout

    agent = up.agent_requests
    assert len(agent) >= 2, [r.get("model") for r in up.model_requests]
    assert all(body["model"] == "qwen3.5-plus" for body in agent)
    # Codex's Responses tools arrived as Chat Completions function tools.
    first = agent[0]
    assert all(tool["type"] == "function" and "parameters" in tool["function"] for tool in first["tools"])
    assert "cmd" in tool_schema(first, "exec_command")["properties"]
    # The second turn carries the call and its output, as Chat messages.
    last = agent[-1]["messages"]
    calls = [c for m in last if m.get("role") == "assistant" for c in m.get("tool_calls") or ()]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [call["arguments"]]
    results = [m for m in last if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in results] == [calls[0]["id"]]

    # Every request Codex made is in the ledger, answered.
    assert totals["requests"] == len(up.model_requests)
    assert totals["input_tokens"] == up.served_tokens.input_tokens
    assert totals["output_tokens"] == up.served_tokens.output_tokens
