"""The inline ``<think>`` splitter must give the same answer however the stream is chunked."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from oneplan.providers.minimax import ThinkSplitter, _ReasoningDetails

# Text that loves to look like the tags.
_ALPHABET = st.sampled_from(
    ["<", ">", "/", "t", "h", "i", "n", "k", "\n", " ", "a", "<think>", "</think>", "</thin", "<th"]
)
_TEXT = st.lists(_ALPHABET, max_size=12).map("".join)


def without_close(text: str) -> str:
    """``text`` with no ``</think>`` in it. One ``replace`` is not enough: removing a tag can join
    its neighbours into a new one ("</thin</think>k>")."""
    while "</think>" in text:
        text = text.replace("</think>", "")
    return text


def run(chunks: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    reasoning, text = [], []
    for chunk in chunks:
        r, t = splitter.feed(chunk)
        reasoning.append(r)
        text.append(t)
    r, t = splitter.flush()
    return "".join(reasoning) + r, "".join(text) + t


def cut(whole: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(whole) + 1) for c in cuts})
    bounds = [0, *points, len(whole)]
    return [whole[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(_TEXT, _TEXT, st.booleans(), st.text(" \n", max_size=2), st.lists(st.integers(0, 200)))
def test_any_chunking_gives_the_one_shot_answer(
    thought: str, answer: str, has_block: bool, lead: str, cuts: list[int]
) -> None:
    thought = without_close(thought)
    whole = f"{lead}<think>{thought}</think>\n\n{answer}" if has_block else answer
    assert run(cut(whole, cuts)) == run([whole])


@settings(max_examples=200, deadline=None)
@given(_TEXT, _TEXT)
def test_every_single_boundary_splits_correctly(thought: str, answer: str) -> None:
    thought = without_close(thought)
    answer = answer.lstrip("\r\n")
    whole = f"<think>{thought}</think>\n\n{answer}"
    for i in range(len(whole) + 1):
        assert run([whole[:i], whole[i:]]) == (thought, answer)


def test_text_without_a_leading_block_is_left_alone() -> None:
    assert run(["The tag <think> means", " nothing here"]) == ("", "The tag <think> means nothing here")
    assert run(["<thi"]) == ("", "<thi")


def test_unterminated_block_is_all_reasoning() -> None:
    assert run(["<think>cut off by max_to", "kens </thi"]) == ("cut off by max_tokens </thi", "")


def test_reasoning_details_incremental_and_cumulative() -> None:
    inc = _ReasoningDetails()
    assert [inc.increment(t) for t in ["The user", " asks", " hi"]] == ["The user", " asks", " hi"]
    cum = _ReasoningDetails()
    assert [cum.increment(t) for t in ["The", "The user", "The user asks"]] == ["The", " user", " asks"]
