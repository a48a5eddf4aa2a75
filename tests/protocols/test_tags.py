"""``TagSplitter``: text in chunks, cut at tags, never half a tag out."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from oneplan.protocols.tags import TagSplitter, partial_suffix

# Sections and the tags that leave them: a small grammar like a model's raw output.
_ENDS = {
    "text": {"<think>": "think", "<tool_call>": "call"},
    "think": {"</think>": "text"},
    "call": {"</tool_call>": "text"},
}
_ALPHABET = st.sampled_from(
    [
        *("<", ">", "/", "t", "h", "i", "n", "k", "a", " ", "\n"),
        *("<think>", "</think>", "<th", "</thi", "<tool_call>", "</tool_call>", "<tool", "_call>"),
    ]
)
_TEXT = st.lists(_ALPHABET, max_size=16).map("".join)


def reference(whole: str) -> list[tuple[str, str]]:
    """The same split, done on the whole text at once."""
    section, at, out = "text", 0, []
    while True:
        hits = [(i, tag) for tag in _ENDS[section] if (i := whole.find(tag, at)) >= 0]
        if not hits:
            return [*out, (section, whole[at:])]
        i, tag = min(hits)
        out.append((section, whole[at:i]))
        section, at = _ENDS[section][tag], i + len(tag)


def cut(whole: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(whole) + 1) for c in cuts})
    return [whole[a:b] for a, b in itertools.pairwise([0, *points, len(whole)])]


def segments(chunks: list[str]) -> list[tuple[str, str]]:
    """Feed ``chunks`` one by one: the (section, text) segments, a segment being the text
    between two tags."""
    splitter, section, out, current = TagSplitter(), "text", [], ""
    for index, chunk in enumerate([*chunks, ""]):
        splitter.feed(chunk)
        final = index == len(chunks)
        while True:
            text, tag = splitter.next(_ENDS[section], final=final)
            current += text
            if tag is None:
                break
            out.append((section, current))
            section, current = _ENDS[section][tag], ""
    return [*out, (section, current)]


@settings(max_examples=400, deadline=None)
@given(_TEXT, st.lists(st.integers(0, 200)))
def test_any_chunking_gives_the_segments_of_the_whole(whole: str, cuts: list[int]) -> None:
    assert segments(cut(whole, cuts)) == segments([whole]) == reference(whole)


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_nothing_that_could_be_a_tag_is_let_out(whole: str) -> None:
    """Fed one character at a time, what comes out before the end never ends in a tag's start
    that the next characters complete."""
    splitter, section = TagSplitter(), "text"
    seen = ""
    for char in whole:
        splitter.feed(char)
        while True:
            text, tag = splitter.next(_ENDS[section])
            seen += text
            if tag is None:
                break
            assert not any(t in text for t in _ENDS[section])
            section, seen = _ENDS[section][tag], ""
        assert not any(t in seen for t in _ENDS[section])


def test_partial_suffix_is_the_longest_proper_start() -> None:
    assert partial_suffix("abc</thi", ("</think>",)) == 5
    assert partial_suffix("abc<", ("</think>", "<tool_call>")) == 1
    assert partial_suffix("x<tool", ("<think>", "<tool_call>")) == 5
    assert partial_suffix("done</think>", ("</think>",)) == 0  # a whole tag is not a start
    assert partial_suffix("anything", ()) == 0


def test_lead_and_ahead() -> None:
    splitter = TagSplitter()
    splitter.feed(" \n<thi")
    assert splitter.lead("<think>") is None and splitter.ahead("<think>") == " \n"
    splitter.feed("nk>why")
    assert splitter.lead("<think>") is True and splitter.rest() == "why"
    splitter.feed("  so <think>")
    assert splitter.lead("<think>") is False and splitter.ahead("<think>") == "  so "
    assert splitter.next(("<think>",)) == ("  so ", "<think>") and not splitter
