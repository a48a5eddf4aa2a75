"""The real Qwen Code CLI (``qwen``, headless) through a real ``oneplan serve``.

Qwen Code speaks OpenAI Chat Completions to oneplan (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
``OPENAI_MODEL``); oneplan forwards to a DashScope provider. The fake model asks for Qwen Code's
``write_file`` tool, Qwen Code writes the file, sends the result back and prints the answer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.agent import AgentUpstream, catalog, isolated_env, ledger_totals, oneplan, tool_schema
from tests.e2e.clis import Installed

CONTENT = "written by Qwen Code through oneplan\n"
FINAL = "Done: qwen.txt is written."
PROMPT = "Write qwen.txt, then say you are done."


def test_qwen_code_writes_a_file_through_oneplan(tmp_path: Path, clis: Installed) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = work / "qwen.txt"
    call = {"name": "write_file", "arguments": {"file_path": str(target), "content": CONTENT}}
    with AgentUpstream("dashscope", prompt=PROMPT, tool_call=call, final_text=FINAL) as up, oneplan(tmp_path, catalog(up, "dashscope")) as (server, key):
        env = isolated_env(
            tmp_path,
            OPENAI_BASE_URL=f"{server.url}/v1",
            OPENAI_API_KEY=key,
            OPENAI_MODEL="qwen3.5-plus",
            QWEN_HOME=str(tmp_path / "qwen-home"),
            QWEN_TELEMETRY_ENABLED="false",
            QWEN_USAGE_STATISTICS_ENABLED="false",
            QWEN_CODE_SUPPRESS_YOLO_WARNING="1",
        )
        done = subprocess.run(
            [str(clis.bin("qwen")), "--auth-type", "openai", "--approval-mode", "yolo", PROMPT],
            cwd=work, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"qwen exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        totals = ledger_totals(server)

    assert target.read_text() == CONTENT
    assert FINAL in done.stdout

    agent = up.agent_requests
    assert len(agent) >= 2, [r.get("model") for r in up.model_requests]
    assert all(body["model"] == "qwen3.5-plus" for body in up.model_requests)
    first = agent[0]
    assert all(tool["type"] == "function" and tool["function"]["name"] for tool in first["tools"])
    assert {"file_path", "content"} <= set(tool_schema(first, "write_file")["properties"])
    assert any(m.get("role") == "tool" and m.get("tool_call_id") for m in agent[1]["messages"])

    assert totals["requests"] == len(up.model_requests)
    assert totals["input_tokens"] == up.served_tokens.input_tokens
    assert totals["output_tokens"] == up.served_tokens.output_tokens
