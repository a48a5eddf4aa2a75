"""``/v1/messages/count_tokens`` answered locally, without an upstream call.

No tokenizer may be downloaded, so the default is an estimate; pass ``tokenizer`` (text -> int)
when a local checkpoint's tokenizer is at hand and it is used for every piece of text instead.

The estimate, per piece of text:

* CJK ideographs, kana and Hangul: 1 token per character (BPE vocabularies of Qwen, GLM, Kimi
  and Claude spend 0.6-1.5 tokens on one; 1 is the middle).
* Other ASCII: 1 token per 4 characters, rounded up (English prose and code average 3.5-4.5
  characters per token on these vocabularies).
* Any other character (accented Latin, Cyrillic, Arabic, emoji, ...): 1 token per 2 characters.

Structure adds: ``_REQUEST_OVERHEAD`` once, ``_MESSAGE_OVERHEAD`` per message (role markers),
``_BLOCK_OVERHEAD`` per tool use / tool result, each tool's name, description and JSON schema
plus ``_TOOL_OVERHEAD``, and ``_TOOLS_PREAMBLE`` once when tools are present (Anthropic
documents a tool-use system prompt of about 346 tokens). Images cost what Anthropic documents,
``width * height / 750`` after its downscaling to a 1568-pixel long edge and 1.15 megapixels,
when the size can be read from a PNG, GIF or JPEG header; otherwise ``_IMAGE_TOKENS`` (the cost
of a full-size image). A PDF document costs ``_DOCUMENT_TOKENS``. Thinking blocks count only in
the last assistant turn, as Anthropic strips them from earlier turns.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from oneplan.errors import InvalidRequest

Tokenizer = Callable[[str], int]

_CJK = re.compile(
    r"[\u1100-\u11ff\u2e80-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)
_REQUEST_OVERHEAD = 3
_MESSAGE_OVERHEAD = 4
_BLOCK_OVERHEAD = 8
_TOOL_OVERHEAD = 8
_TOOLS_PREAMBLE = 346
_IMAGE_TOKENS = 1600
_DOCUMENT_TOKENS = 1500
_MAX_EDGE = 1568
_MAX_PIXELS = 1_150_000
# JPEG start-of-frame markers (baseline, progressive, ...): they carry the image size.
_JPEG_FRAME_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def estimate_text_tokens(text: str) -> int:
    """The heuristic above for one piece of text. Cheap enough to run per streamed chunk."""
    if not text:
        return 0
    if text.isascii():
        return (len(text) + 3) // 4
    cjk = len(_CJK.findall(text))
    ascii_chars = len(text.encode("ascii", "ignore"))
    other = len(text) - cjk - ascii_chars
    return cjk + (ascii_chars + 3) // 4 + (other + 1) // 2


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first bytes of a PNG, GIF or JPEG; ``None`` if unreadable."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        at = 2
        while at + 9 < len(data):
            if data[at] != 0xFF:
                return None
            marker = data[at + 1]
            length = int.from_bytes(data[at + 2 : at + 4], "big")
            if marker in _JPEG_FRAME_MARKERS:
                width = int.from_bytes(data[at + 7 : at + 9], "big")
                return width, int.from_bytes(data[at + 5 : at + 7], "big")
            at += 2 + length
    return None


def image_tokens(source: Any) -> int:
    """Anthropic's image cost for a base64 source whose size is readable, else a full image."""
    if not isinstance(source, dict) or source.get("type") != "base64":
        return _IMAGE_TOKENS
    data = source.get("data")
    if not isinstance(data, str):
        return _IMAGE_TOKENS
    head = data[:87_384]  # 64 KiB decoded: JPEG size markers sit well inside it
    try:
        size = _image_size(base64.b64decode(head[: len(head) // 4 * 4]))
    except (binascii.Error, ValueError):
        size = None
    if not size or size[0] <= 0 or size[1] <= 0:
        return _IMAGE_TOKENS
    width, height = size
    scale = min(1.0, _MAX_EDGE / max(width, height))
    scale = min(scale, math.sqrt(_MAX_PIXELS / (width * height)))
    return max(1, math.ceil(width * scale * height * scale / 750))


class _Counter:
    __slots__ = ("count",)

    def __init__(self, tokenizer: Tokenizer | None) -> None:
        self.count: Tokenizer = tokenizer or estimate_text_tokens

    def content(self, content: Any, *, thinking: bool) -> int:
        if isinstance(content, str):
            return self.count(content)
        if not isinstance(content, list):
            return 0
        return sum(self.block(b, thinking=thinking) for b in content if isinstance(b, dict))

    def block(self, block: dict[str, Any], *, thinking: bool) -> int:
        kind = block.get("type")
        if kind == "text":
            return self.count(str(block.get("text", "")))
        if kind == "image":
            return image_tokens(block.get("source"))
        if kind == "document":
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "text":
                return self.count(str(source.get("data", "")))
            if isinstance(source, dict) and source.get("type") == "content":
                return self.content(source.get("content"), thinking=False)
            return _DOCUMENT_TOKENS
        if kind == "tool_use":
            arguments = orjson.dumps(block.get("input", {})).decode()
            return _BLOCK_OVERHEAD + self.count(str(block.get("name", ""))) + self.count(arguments)
        if kind == "tool_result":
            return _BLOCK_OVERHEAD + self.content(block.get("content"), thinking=False)
        if kind == "thinking" and thinking:
            return self.count(str(block.get("thinking", "")))
        return 0

    def tool(self, tool: dict[str, Any]) -> int:
        schema = orjson.dumps(tool.get("input_schema", {}), option=orjson.OPT_SORT_KEYS).decode()
        return (
            _TOOL_OVERHEAD
            + self.count(str(tool.get("name", "")))
            + self.count(str(tool.get("description", "")))
            + self.count(schema)
        )


def count_tokens(body: Any, tokenizer: Tokenizer | None = None) -> int:
    """Estimated input tokens of an Anthropic Messages (or count_tokens) body, as Anthropic
    would report ``input_tokens``. ``tokenizer`` replaces the text heuristic when given."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    counter = _Counter(tokenizer)
    total = _REQUEST_OVERHEAD + counter.content(body.get("system"), thinking=False)
    last_assistant = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
        default=-1,
    )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: must be an object", param=f"messages.{i}")
        total += _MESSAGE_OVERHEAD + counter.content(message.get("content"), thinking=i == last_assistant)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += _TOOLS_PREAMBLE + sum(counter.tool(t) for t in tools if isinstance(t, dict))
    return total
