"""A Claude Code-shaped session through oneplan's ``/v1/messages`` with the real ``anthropic``
SDK, against upstreams that cache explicitly at ``cache_control`` breakpoints.

Claude Code marks its system blocks and the last block of the newest user turn, and moves that
mark forward every turn. The fakes keep a real (small) prompt cache (tests/fakes/cache.py): the
first turn writes the prefix, each later turn reads what the turn before wrote and writes the
new part. The ledger must show the reads as reads and the writes as writes, each priced at its
own price; the hints must reach the upstreams that honour them, tools' included where the
dialect has a place for them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

INPUT, CACHED, WRITE, OUTPUT = 3.0, 0.3, 3.75, 15.0
EPHEMERAL = {"type": "ephemeral"}
SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": EPHEMERAL},
    {"type": "text", "text": "Follow the repository's conventions. " * 120, "cache_control": EPHEMERAL},
]
TOOLS = [
    {
        "name": "Read",
        "description": "Read a file from the local filesystem. " * 10,
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
    },
    {
        "name": "Edit",
        "description": "Replace a string in a file. " * 10,
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
        "cache_control": EPHEMERAL,
    },
]

# (provider kind, dialect, fake)
UPSTREAMS = [
    ("anthropic-compatible", "anthropic", "anthropic"),
    ("dashscope", "anthropic", "anthropic-dashscope"),
    ("minimax", "anthropic", "anthropic-minimax"),
    ("dashscope", "openai", "dashscope"),
]


def catalog(up: FakeUpstream, kind: str, dialect: str) -> str:
    return f"""
[providers.up]
kind = "{kind}"
dialect = "{dialect}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."coder"]
provider = "up"
input_price = {INPUT}
cached_input_price = {CACHED}
cache_write_price = {WRITE}
output_price = {OUTPUT}

[aliases]
"claude-*" = "coder"

[plans.pro]
requests_per_5h = 100
"""


@pytest.fixture(params=UPSTREAMS, ids=[u[2] for u in UPSTREAMS])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream, str]]:
    kind, dialect, fake = request.param
    with FakeUpstream(dialect=fake) as up, Gateway(tmp_path, catalog(up, kind, dialect)) as gw:
        yield gw, up, dialect


def marked_last(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claude Code's habit: the newest user turn's last block carries the breakpoint."""
    out = [{k: v for k, v in b.items() if k != "cache_control"} for b in content]
    out[-1]["cache_control"] = EPHEMERAL
    return out


def unmarked(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(messages)
    for m in out:
        if isinstance(m["content"], list):
            for b in m["content"]:
                b.pop("cache_control", None)
    return out


def hand_cost(row: dict[str, Any]) -> float:
    fresh = row["input_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
    return (
        fresh * INPUT + row["cached_tokens"] * CACHED + row["cache_write_tokens"] * WRITE + row["output_tokens"] * OUTPUT
    ) / 1_000_000


def test_claude_code_session_prices_cache_reads_as_reads(setup: tuple[Gateway, FakeUpstream, str]) -> None:
    gw, up, dialect = setup
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    up.reply(tool_calls=[{"name": "Read", "arguments": {"file_path": "README.md"}}])
    up.reply(tool_calls=[{"name": "Edit", "arguments": {"file_path": "README.md"}}])
    up.reply("Done: README.md edited.")
    reminder = {"type": "text", "text": "<system-reminder>The date is 2026-12-02.</system-reminder>"}
    history: list[dict[str, Any]] = [
        {"role": "user", "content": marked_last([reminder, {"type": "text", "text": "Fix the typo in README.md"}])}
    ]
    finals = []
    for turn in range(3):
        with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=4096, system=SYSTEM, tools=TOOLS, messages=history
        ) as stream:
            final = stream.get_final_message()
        finals.append(final)
        if turn == 2:
            break
        (call,) = [b for b in final.content if b.type == "tool_use"]
        result = {"type": "tool_result", "tool_use_id": call.id, "content": f"contents of {call.input['file_path']}"}
        history = [
            *unmarked(history),
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {"role": "user", "content": marked_last([result])},
        ]
    assert finals[-1].content[0].type == "text"

    # The hints reached the upstream where its dialect has them.
    sent = up.requests[-1].json
    if dialect == "anthropic":
        assert sent["system"] == SYSTEM and sent["tools"] == TOOLS  # passed through as sent
        assert sent["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
    else:  # DashScope's Chat Completions: markers in messages, none on tools (no slot there)
        assert sent["messages"][0]["content"][1]["cache_control"] == EPHEMERAL
        assert sent["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
        assert all("cache_control" not in t for t in sent["tools"])

    rows = gw.ledger()
    assert [r["status"] for r in rows] == ["ok"] * 3
    first, second, third = rows
    # Turn 1 writes the whole marked prefix; each later turn reads what the turn before
    # cached and writes only what is new.
    assert first["cached_tokens"] == 0 and first["cache_write_tokens"] > 0
    assert second["cached_tokens"] == first["cache_write_tokens"] and second["cache_write_tokens"] > 0
    assert third["cached_tokens"] == second["cached_tokens"] + second["cache_write_tokens"]
    assert third["cache_write_tokens"] > 0
    for number, row in enumerate(rows, 1):
        print(f"turn {number}: input {row['input_tokens']} read {row['cached_tokens']} "
              f"write {row['cache_write_tokens']} output {row['output_tokens']} cost ${row['cost']:.6f}")
        assert row["cached_tokens"] + row["cache_write_tokens"] <= row["input_tokens"]
        assert row["cost"] == pytest.approx(hand_cost(row), rel=1e-12)
    # A cache read costs a tenth of fresh input here, so the third turn's 90 % saving on its
    # reads is visible in dollars.
    full_price = third["input_tokens"] * INPUT + third["output_tokens"] * OUTPUT
    saved = third["cached_tokens"] * (INPUT - CACHED) - third["cache_write_tokens"] * (WRITE - INPUT)
    assert third["cost"] == pytest.approx((full_price - saved) / 1_000_000, rel=1e-12)
    # What the client was told matches the ledger, in Anthropic's convention.
    for final, row in zip(finals, rows, strict=True):
        assert final.usage.cache_read_input_tokens == row["cached_tokens"]
        assert final.usage.cache_creation_input_tokens == row["cache_write_tokens"]
        assert final.usage.input_tokens == row["input_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
    # And it is what the upstream billed.
    served = up.served_tokens
    assert (served.input_tokens, served.cached_tokens, served.cache_write_tokens) == (
        sum(r["input_tokens"] for r in rows),
        sum(r["cached_tokens"] for r in rows),
        sum(r["cache_write_tokens"] for r in rows),
    )
