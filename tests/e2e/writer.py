"""A fake model that plays "write a file" for any coding agent, whatever its tools are called.

The prompt asks for ``hello.txt`` holding one line. On the turn with the prompt, the fake finds
the agent's file-writing tool among those it declared (``write``, ``Write``, ``write_file``,
``write_to_file``, ``create_file``, ...; a shell tool as the fallback) and fills in the path and
content under the names that tool's schema uses. Once the conversation carries the tool's result
it answers with the final text. Agents without tool calling (Aider) get the file as a
whole-file edit block. It reasons on every answer: the fakes send reasoning only when the
request has thinking on, as the providers do.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.agent import SIDE_TEXT, AgentUpstream, has_tool_result, last_user_text
from tests.fakes import Answer

FILE = "hello.txt"
LINE = "written through oneplan"
PROMPT = f"Create the file {FILE} containing exactly the line '{LINE}', using your file-writing tool. Then say DONE."
FINAL = "DONE: hello.txt is written."
REASONING = "The user wants one file; I will call the write tool."

_WRITE_NAMES = ("write", "write_file", "write_to_file", "create_file", "writefile", "file_write", "create_new_file",
                "editor", "edit_file")
_SHELL_NAMES = ("exec_command", "shell", "bash", "run_command", "execute_command", "run_terminal_command", "run_commands")
_PATH_KEYS = ("file_path", "filePath", "path", "filepath", "absolute_path", "target_file", "filename")
_CONTENT_KEYS = ("content", "contents", "text", "file_text", "new_content", "fileContents", "file_content", "new_text")
_COMMAND_KEYS = ("cmd", "command", "commands")


def _tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        name = function.get("name")
        if isinstance(name, str):
            schema = function.get("parameters", function.get("input_schema")) or {}
            out[name] = schema if isinstance(schema, dict) else {}
    return out


def write_call(body: dict[str, Any], workdir: str) -> dict[str, Any] | None:
    """A call of the agent's own write tool (or shell), with arguments in its schema's names."""
    tools = _tools(body)
    by_lower = {name.lower(): name for name in tools}
    for wanted in _WRITE_NAMES:
        name = by_lower.get(wanted)
        if name is None:
            continue
        props = tools[name].get("properties") or {}
        path_key = next((k for k in _PATH_KEYS if k in props), None)
        content_key = next((k for k in _CONTENT_KEYS if k in props), None)
        if path_key and content_key:
            args: dict[str, Any] = {path_key: f"{workdir}/{FILE}", content_key: LINE + "\n"}
            return {"name": name, "arguments": args}
    for wanted in _SHELL_NAMES:
        name = by_lower.get(wanted)
        if name is None:
            continue
        props = tools[name].get("properties") or {}
        key = next((k for k in _COMMAND_KEYS if k in props), "command")
        command = f"printf '%s\\n' '{LINE}' > {workdir}/{FILE}"
        spec = props.get(key) or {}
        value: Any = command
        if spec.get("type") == "array":
            value = [command] if key == "commands" else ["bash", "-lc", command]
        return {"name": name, "arguments": {key: value}}
    return None


class WriterUpstream(AgentUpstream):
    def __init__(self, dialect: str, workdir: str) -> None:
        super().__init__(dialect, prompt=PROMPT, tool_call={}, final_text=FINAL)
        self.workdir = workdir
        self.unmatched: list[list[str]] = []  # tool lists where no write tool was found

    def answer_for(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return Answer.make(SIDE_TEXT)
        prompted = PROMPT in last_user_text(body) or PROMPT in json.dumps(body.get("input", ""))
        if body.get("tools"):
            if has_tool_result(body) or _responses_has_output(body):
                return Answer.make(FINAL, reasoning=REASONING)
            if prompted:
                call = write_call(body, self.workdir)
                if call is not None:
                    return Answer.make(tool_calls=[call], reasoning=REASONING)
                self.unmatched.append(sorted(_tools(body)))
        elif prompted:
            # No tool calling (Aider): the whole file as an edit block.
            return Answer.make(f"{FILE}\n```\n{LINE}\n```\n{FINAL}", reasoning=REASONING)
        return Answer.make(SIDE_TEXT)


def _responses_has_output(body: dict[str, Any]) -> bool:
    items = body.get("input")
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output") for i in items
    )
