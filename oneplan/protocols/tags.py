"""Text that arrives in chunks, cut at tags such as ``<think>`` without ever leaking half a tag.

A model's raw output marks its sections with tags (``<think>...</think>``, ``<tool_call>...``),
and a stream may cut a tag anywhere. ``TagSplitter`` holds the text fed so far and hands it back a
piece at a time: the text before the next of the tags the caller is looking for (and which tag
that was), or, while none of them is in sight, everything except a tail that could still grow
into one. What each section means, and what whitespace around the tags is layout, is the
caller's: it says which tags end the section it is in, and may change them after every tag.
"""

from __future__ import annotations

from collections.abc import Iterable


def partial_suffix(text: str, tags: Iterable[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into one of ``tags``."""
    best = 0
    for tag in tags:
        for size in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:size]):
                best = size
                break
    return best


class TagSplitter:
    """``feed`` text in chunks; take it back with ``next``, cut at the tags asked for."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = ""

    def __bool__(self) -> bool:
        """Whether any text is held."""
        return bool(self._buf)

    def feed(self, text: str) -> None:
        self._buf += text

    def next(self, tags: Iterable[str], *, final: bool = False) -> tuple[str, str | None]:
        """The text before the first of ``tags`` and that tag, both consumed; or, when none of
        them is held, ``(settled, None)``: all the text but a tail that could still become one
        of them (nothing is held back when ``final``, the text having ended)."""
        tags = tuple(tags)
        hits = [(at, tag) for tag in tags if (at := self._buf.find(tag)) >= 0]
        if hits:
            at, tag = min(hits)
            before, self._buf = self._buf[:at], self._buf[at + len(tag) :]
            return before, tag
        keep = 0 if final else partial_suffix(self._buf, tags)
        cut = len(self._buf) - keep
        settled, self._buf = self._buf[:cut], self._buf[cut:]
        return settled, None

    def ahead(self, tag: str) -> str:
        """The held text before ``tag``, or before a tail that could still become it (all the
        text when neither is held). Nothing is consumed."""
        at = self._buf.find(tag)
        return self._buf[: at if at >= 0 else len(self._buf) - partial_suffix(self._buf, (tag,))]

    def lead(self, tag: str) -> bool | None:
        """Whether the held text, past leading whitespace, opens with ``tag``: True consumes the
        whitespace and the tag; None, nothing consumed, while the text held so far could still
        become it; False, nothing consumed, when it cannot."""
        head = self._buf.lstrip()
        if head.startswith(tag):
            self._buf = head[len(tag) :]
            return True
        return None if tag.startswith(head) else False

    def rest(self) -> str:
        """All the text held, taken out."""
        rest, self._buf = self._buf, ""
        return rest
