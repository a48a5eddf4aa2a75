"""Each real agent CLI, refused by oneplan: a bad key and a used-up plan window each end the
agent's run within 10 s, with oneplan's own message in what the agent prints.

Without ``x-should-retry: false`` Claude Code retried a 401 for ~3 minutes; without
``insufficient_quota`` Codex kept "Reconnecting..." for as long as the window stayed shut. What
each agent does is recorded in docs/conformance.md.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.agent import AgentUpstream, isolated_env, oneplan
from tests.e2e.clis import Installed
from tests.e2e.stopwatch import Stopwatch
from tests.e2e.test_claude_code import quiet_claude_env
from tests.e2e.test_codex import codex_home

PROMPT = "Say hello."
BUDGET = 10.0  # seconds from the agent's first model request to its exit
BAD_KEY = "sk-op-this-key-does-not-exist"
# What each agent must show: oneplan's own message, except where the agent replaces it with
# its own fixed text (Codex prints "Quota exceeded. Check your plan and billing details." for
# OpenAI's insufficient_quota, whatever the message says; docs/conformance.md).
SHOWN = {
    ("claude", "bad-key"): "Invalid API key",
    ("claude", "exhausted"): "weekly request quota is used up",
    ("codex", "bad-key"): "Invalid API key",
    ("codex", "exhausted"): "Quota exceeded",
    ("qwen", "bad-key"): "Invalid API key",
    ("qwen", "exhausted"): "weekly request quota is used up",
}


def catalog(up: AgentUpstream) -> str:
    """One week's quota of one request: the test spends it, the agent meets the refusal."""
    return f"""
[providers.up]
kind = "dashscope"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."qwen3.5-plus"]
provider = "up"

[aliases]
"claude-*" = "qwen3.5-plus"

[plans.pro]
requests_per_week = 1
"""


def command(agent: str, clis: Installed, tmp_path: Path, url: str, key: str) -> tuple[list[str], dict[str, str]]:
    if agent == "claude":
        env = quiet_claude_env(tmp_path, url, ANTHROPIC_AUTH_TOKEN=key)
        return [str(clis.bin("claude")), "-p", PROMPT], env
    if agent == "codex":
        env = isolated_env(tmp_path, CODEX_HOME=str(codex_home(tmp_path, url, "qwen3.5-plus")), ONEPLAN_API_KEY=key)
        return [str(clis.bin("codex")), "exec", "--skip-git-repo-check", "--ephemeral", PROMPT], env
    env = isolated_env(
        tmp_path, OPENAI_BASE_URL=f"{url}/v1", OPENAI_API_KEY=key, OPENAI_MODEL="qwen3.5-plus",
        QWEN_HOME=str(tmp_path / "qwen-home"), QWEN_TELEMETRY_ENABLED="false", QWEN_USAGE_STATISTICS_ENABLED="false",
    )
    return [str(clis.bin("qwen")), "--auth-type", "openai", PROMPT], env


@pytest.mark.parametrize("refusal", ["bad-key", "exhausted"])
@pytest.mark.parametrize("agent", ["claude", "codex", "qwen"])
def test_a_refused_agent_stops_at_once_and_says_why(tmp_path: Path, clis: Installed, agent: str, refusal: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with AgentUpstream("dashscope", prompt=PROMPT, tool_call={"name": "none", "arguments": {}}, final_text="hi") as up, \
            oneplan(tmp_path, catalog(up)) as (server, key):
        if refusal == "exhausted":
            spent = httpx.post(f"{server.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                               json={"model": "qwen3.5-plus", "messages": [{"role": "user", "content": "x"}]}, timeout=30)
            assert spent.status_code == 200, spent.text
        with Stopwatch(server.url) as watch:
            argv, env = command(agent, clis, tmp_path, watch.url, BAD_KEY if refusal == "bad-key" else key)
            started = time.monotonic()
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            ended = time.monotonic()
        calls = watch.model_calls()
    output = done.stdout + done.stderr
    assert calls, f"{agent} made no model request:\n{output[-3000:]}"
    elapsed = ended - calls[0]
    report = (
        f"{agent} {refusal}: exited {done.returncode}, {len(calls)} model request(s), {elapsed:.1f}s from the first "
        f"to exit ({ended - started:.1f}s with start-up)\nstdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}"
    )
    assert elapsed < BUDGET, report
    assert done.returncode != 0, report
    print(report)  # what the agent did, for docs/conformance.md (pytest -s)
    assert SHOWN[agent, refusal] in output, report
    assert len(up.model_requests) == (1 if refusal == "exhausted" else 0)  # nothing refused reached the model
