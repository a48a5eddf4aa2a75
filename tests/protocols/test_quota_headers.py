"""Protocol-specific quota headers come from the protocol (``Protocol.quota_headers``), not from
``refusals``: Anthropic adds ``anthropic-ratelimit-*``, the OpenAI protocols add nothing of their own."""

from __future__ import annotations

from oneplan import refusals
from oneplan.metering.windows import WindowState
from oneplan.protocols.registry import BY_NAME

NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z
STATES = [
    WindowState("5h", used=3, limit=10, resets_at=NOW + 3600, unit="requests", span=5 * 3600, kind="rolling"),
    WindowState("week", used=1, limit=50, resets_at=None, unit="requests", span=7 * 86400, kind="rolling"),
    WindowState("tokens_month", used=400, limit=1000, resets_at=NOW + 60, unit="tokens", kind="calendar"),
]


def test_anthropic_adds_its_request_and_token_headers() -> None:
    own = BY_NAME["anthropic"].quota_headers(STATES, STATES[0], NOW)
    assert own == {
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "600",
        "anthropic-ratelimit-tokens-reset": "2026-11-18T11:07:40Z",
        "anthropic-ratelimit-requests-limit": "10",
        "anthropic-ratelimit-requests-remaining": "7",
        "anthropic-ratelimit-requests-reset": "2026-11-18T12:06:40Z",
    }
    headers = refusals.quota_headers(STATES, NOW, BY_NAME["anthropic"])
    assert own.items() <= headers.items()
    assert headers["x-ratelimit-remaining-requests"] == "7"  # what every client gets is still there


def test_anthropic_without_windows_of_a_kind_leaves_those_headers_out() -> None:
    protocol = BY_NAME["anthropic"]
    assert protocol.quota_headers(STATES[:2], None, NOW) == {}
    requests_only = protocol.quota_headers(STATES[:1], STATES[0], NOW)
    assert set(requests_only) == {f"anthropic-ratelimit-requests-{k}" for k in ("limit", "remaining", "reset")}
    unset = WindowState("5h", used=0, limit=2, resets_at=None, unit="requests")
    assert protocol.quota_headers([unset], unset, NOW)["anthropic-ratelimit-requests-reset"] == "2026-11-18T11:06:40Z"


def test_the_openai_protocols_add_none_of_their_own() -> None:
    plain = refusals.quota_headers(STATES, NOW)
    for name in ("openai_chat", "responses"):
        assert BY_NAME[name].quota_headers(STATES, STATES[0], NOW) == {}
        assert refusals.quota_headers(STATES, NOW, BY_NAME[name]) == plain
    assert not any(k.startswith("anthropic-") for k in plain)


def test_the_rendered_block_is_the_headers_line_by_line() -> None:
    """Answers carry the quota headers as a block rendered once (``quota_block``); refusals
    read the same block as a dict. Both say the same, in the same order, as header lines."""
    from oneplan.server.sse import block_pairs

    fractional = WindowState("cost_month", used=0.25, limit=2.5, resets_at=NOW + 10, unit="cost", kind="calendar")
    states = [*STATES, fractional]
    block = refusals.quota_block(states, NOW, BY_NAME["anthropic"])
    assert block.endswith(b"\r\n") and b"\r\n\r\n" not in block
    pairs = [(k.decode(), v.decode()) for k, v in block_pairs(block)]
    assert pairs == list(refusals.quota_headers(states, NOW, BY_NAME["anthropic"]).items())
    assert all(k == k.lower() for k, _ in pairs)
    headers = dict(pairs)
    assert headers["x-oneplan-quota-cost-month-remaining"] == "2.25"
    assert headers["x-oneplan-quota-week-remaining"] == "49" and "x-oneplan-quota-week-reset" not in headers
    assert headers["ratelimit"] == '"5h";r=7;t=3600, "week";r=49, "tokens_month";r=600;t=60'


def test_a_window_name_that_could_split_the_head_is_refused() -> None:
    import pytest

    bad = WindowState("5h\r\nset-cookie: x", used=0, limit=10, resets_at=None, unit="requests")
    with pytest.raises(RuntimeError):
        refusals.quota_block([bad], NOW)
