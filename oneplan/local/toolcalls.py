"""Incremental parsers for the body of one ``<tool_call>...</tool_call>`` block.

Qwen models write tool calls in one of two formats, chosen by their chat template:

* JSON (Qwen2.5, Qwen3): ``{"name": "f", "arguments": {...}}``. The arguments object is passed on
  exactly as the model wrote it, streamed as it forms (only a closing brace that may be the outer
  object's is held back).
* XML (Qwen3-Coder, Qwen3.5): ``<function=f><parameter=p>value</parameter></function>``. Values are
  raw text, so each is converted with the tool's JSON schema (``"3"`` becomes ``3`` for an integer
  parameter) and the arguments JSON object is built as the parameters arrive; string values are
  streamed character by character.

Both take text in arbitrary chunks (``feed``) and emit ``ToolCallDelta`` values whose arguments
concatenate to the final JSON text, however the text was split.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oneplan.protocols.canonical import ToolCallDelta
from oneplan.protocols.tags import partial_suffix

_JSON_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_FUNCTION = re.compile(r"<function=([^>\n]*)>")
_PARAM_END = "</parameter>"
_FUNC_END = "</function>"
_PARAM_OPEN = "<parameter="


def _types(schema: dict[str, Any] | None) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    found = set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            found |= _types(sub)
    if "enum" in schema and not found:
        found = {type_name(v) for v in schema["enum"]}
    return found


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def is_string_param(schema: dict[str, Any] | None) -> bool:
    """Stream the value as a JSON string: the schema says string, or says nothing at all."""
    kinds = _types(schema)
    return not kinds or "string" in kinds


def convert_value(raw: str, schema: dict[str, Any] | None) -> Any:
    """Convert an XML parameter's text to the JSON type its schema asks for; keep text otherwise."""
    kinds = _types(schema)
    if not kinds or "string" in kinds:
        return raw
    text = raw.strip()
    if "null" in kinds and text.lower() in ("null", "none"):
        return None
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "integer" in kinds:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in kinds or "integer" in kinds:
        try:
            number = float(text)
            return int(number) if number.is_integer() and "integer" in kinds else number
        except ValueError:
            pass
    if kinds & {"object", "array"}:
        try:
            return json.loads(text)
        except ValueError:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
    return raw


def tool_schemas(tools: Sequence[Mapping[str, object]] | None) -> dict[str, dict[str, Any]]:
    """Tool name -> its ``parameters.properties``, from OpenAI-format tools (plain dicts at run
    time, so each key is checked)."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools or []:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters") or {}
            props = params.get("properties") if isinstance(params, dict) else None
            out[fn["name"]] = props if isinstance(props, dict) else {}
    return out


class JsonCallParser:
    """One JSON tool call; ``close`` returns ``None`` when it was not a tool call after all."""

    def __init__(self, index: int, call_id: str) -> None:
        self.index = index
        self.id = call_id
        self._raw = ""
        self._named = False
        self._sent = 0  # how much of _raw has been emitted as arguments

    def feed(self, text: str) -> list[ToolCallDelta]:
        self._raw += text
        out: list[ToolCallDelta] = []
        if not self._named:
            match = _JSON_HEAD.match(self._raw)
            if match is None or match.end() == len(self._raw):
                return out  # wait for the first character of the arguments themselves
            try:
                name = json.loads(f'"{match.group(1)}"')
            except ValueError:
                return out
            self._named = True
            self._sent = match.end()
            out.append(ToolCallDelta(index=self.index, id=self.id, name=name))
        pending = self._raw[self._sent :].rstrip()
        if pending.endswith("}"):
            pending = pending[:-1]  # may be the outer object's closing brace
        if pending:
            self._sent += len(pending)
            out.append(ToolCallDelta(index=self.index, arguments=pending))
        return out

    def close(self) -> list[ToolCallDelta] | None:
        if self._named:
            rest = self._raw[self._sent :].rstrip()
            rest = rest[:-1] if rest.endswith("}") else rest
            return [ToolCallDelta(index=self.index, arguments=rest)] if rest else []
        try:
            obj = json.loads(self._raw)
        except ValueError:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None
        args = obj.get("arguments", obj.get("parameters", {}))
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return [ToolCallDelta(index=self.index, id=self.id, name=obj["name"], arguments=text)]


class XmlCallParser:
    """One XML tool call, its arguments built as a JSON object parameter by parameter."""

    def __init__(self, index: int, call_id: str, schemas: dict[str, dict[str, Any]]) -> None:
        self.index = index
        self.id = call_id
        self._schemas = schemas
        self._props: dict[str, Any] = {}
        self._buf = ""
        self._state = "function"  # function | between | value | done
        self._params = 0
        self._schema: dict[str, Any] | None = None
        self._streaming = False  # the current value is streamed as a JSON string
        self._value = ""  # the current non-streamed value, or the held tail of a streamed one
        self._value_started = False

    def _args(self, text: str) -> ToolCallDelta:
        return ToolCallDelta(index=self.index, arguments=text)

    def feed(self, text: str, *, final: bool = False) -> list[ToolCallDelta]:
        self._buf += text
        out: list[ToolCallDelta] = []
        while True:
            if self._state == "function":
                match = _FUNCTION.search(self._buf)
                if match is None:
                    return out
                name = match.group(1).strip()
                self._props = self._schemas.get(name, {})
                out.append(ToolCallDelta(index=self.index, id=self.id, name=name))
                self._buf = self._buf[match.end() :]
                self._state = "between"
            elif self._state == "between":
                self._buf = self._buf.lstrip()
                if self._buf.startswith(_FUNC_END):
                    out.append(self._args("}" if self._params else "{}"))
                    self._buf = self._buf[len(_FUNC_END) :]
                    self._state = "done"
                elif self._buf.startswith(_PARAM_OPEN):
                    end = self._buf.find(">")
                    if end < 0:
                        return out
                    name = self._buf[len(_PARAM_OPEN) : end].strip()
                    self._buf = self._buf[end + 1 :]
                    out.append(self._open_param(name))
                    self._state = "value"
                elif not self._buf or _FUNC_END.startswith(self._buf) or _PARAM_OPEN.startswith(self._buf):
                    return out
                else:  # stray text between parameters: skip to the next tag
                    cut = self._buf.find("<", 1)
                    self._buf = self._buf[cut:] if cut > 0 else ""
            elif self._state == "value":
                end = self._buf.find(_PARAM_END)
                if end < 0:
                    keep = 0 if final else partial_suffix(self._buf, (_PARAM_END,))
                    chunk, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
                    piece = self._value_piece(chunk, last=final)
                    if piece:
                        out.append(self._args(piece))
                    if final:
                        out.append(self._args(self._close_value()))
                    return out
                piece = self._value_piece(self._buf[:end], last=True)
                if piece:
                    out.append(self._args(piece))
                out.append(self._args(self._close_value()))
                self._buf = self._buf[end + len(_PARAM_END) :]
                self._state = "between"
            else:
                self._buf = ""
                return out

    def _open_param(self, name: str) -> ToolCallDelta:
        self._schema = self._props.get(name)
        self._streaming = is_string_param(self._schema)
        self._value = ""
        self._value_started = False
        lead = "{" if self._params == 0 else ", "
        self._params += 1
        key = json.dumps(name, ensure_ascii=False)
        return self._args(f'{lead}{key}: "' if self._streaming else f"{lead}{key}: ")

    def _value_piece(self, chunk: str, *, last: bool) -> str:
        """Add text of the current value; for a string value, return what can be streamed."""
        if not self._value_started and chunk:
            self._value_started = True
            if chunk.startswith("\n"):
                chunk = chunk[1:]  # the line break after <parameter=...> is layout
        if not self._streaming:
            self._value += chunk
            return ""
        text = self._value + chunk
        if last:
            text = text[:-1] if text.endswith("\n") else text
            self._value = ""
        elif text.endswith("\n"):
            text, self._value = text[:-1], "\n"  # may be the line break before </parameter>
        else:
            self._value = ""
        return json.dumps(text, ensure_ascii=False)[1:-1]

    def _close_value(self) -> str:
        if self._streaming:
            return '"'
        raw = self._value[:-1] if self._value.endswith("\n") else self._value
        self._value = ""
        return json.dumps(convert_value(raw, self._schema), ensure_ascii=False)

    def close(self) -> list[ToolCallDelta] | None:
        if self._state == "function":
            return None
        out = self.feed("", final=True) if self._state == "value" else []
        if self._state != "done":
            out.append(self._args("}" if self._params else "{}"))
            self._state = "done"
        return out
