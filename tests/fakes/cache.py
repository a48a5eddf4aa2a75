"""A fake upstream's explicit prompt cache: ``cache_control`` breakpoints, reads and writes.

It behaves like the explicit caches of Anthropic, DashScope and MiniMax, in small:

* the prompt is a sequence of blocks, in the order the provider caches them (Anthropic: tools,
  then system blocks, then each message's content blocks; Chat Completions: each message's
  content parts); a block carrying ``cache_control`` is a breakpoint, and the prefix up to and
  including it is what gets cached;
* a request reads the longest cached prefix found looking back up to 20 blocks from each of
  its breakpoints (both providers document that window), and writes what lies between that
  and its last breakpoint (nothing when the last one hit);
* a breakpoint with ``cache_control.ttl == "1h"`` writes with a one-hour lifetime.

Sizes are the fakes' usual estimate (a token per four bytes of JSON), so a test knows exactly
which counts a request must report. Nothing expires: a test session is far shorter than 5 min.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

LOOKBACK = 20


def blocks(body: dict[str, Any], *, anthropic: bool) -> list[dict[str, Any]]:
    """The request's cacheable blocks, in caching order."""
    out: list[dict[str, Any]] = []
    if anthropic:
        out += [t for t in body.get("tools") or () if isinstance(t, dict)]
        system = body.get("system")
        if isinstance(system, list):
            out += [b for b in system if isinstance(b, dict)]
        elif isinstance(system, str) and system:
            out.append({"type": "text", "text": system})
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            out += [{"role": message.get("role"), **b} for b in content if isinstance(b, dict)]
        elif isinstance(content, str):
            out.append({"role": message.get("role"), "type": "text", "text": content})
    return out


def _size(block: dict[str, Any]) -> int:
    plain = {k: v for k, v in block.items() if k != "cache_control"}
    return max(1, len(json.dumps(plain, ensure_ascii=False, sort_keys=True)) // 4)


class PromptCache:
    """One upstream account's cache (thread-safe: the fake serves from its own loop)."""

    def __init__(self, *, anthropic: bool) -> None:
        self.anthropic = anthropic
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def lookup(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """``(read, write, write_1h)`` for this request, remembering what it wrote."""
        digest = hashlib.sha256()
        size = 0
        prefixes: list[tuple[str, int]] = []  # (prefix key, prefix tokens) after each block
        points: list[tuple[int, bool]] = []  # breakpoints: (block index, one hour)
        for block in blocks(body, anthropic=self.anthropic):
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            digest.update(json.dumps(plain, sort_keys=True).encode())
            size += _size(block)
            prefixes.append((digest.hexdigest(), size))
            marker = block.get("cache_control")
            if isinstance(marker, dict):
                points.append((len(prefixes) - 1, marker.get("ttl") == "1h"))
        if not points:
            return 0, 0, 0
        with self._lock:
            read = 0
            for index, _ in points:  # each breakpoint looks back LOOKBACK blocks for a hit
                for j in range(index, max(-1, index - LOOKBACK), -1):
                    if prefixes[j][0] in self._known:
                        read = max(read, prefixes[j][1])
                        break
            last, one_hour = points[-1]
            last_key, last_tokens = prefixes[last]
            write = 0 if last_key in self._known else max(0, last_tokens - read)
            self._known.update(prefixes[i][0] for i, _ in points)
        return read, write, write if one_hour else 0
