"""Cache classes through every dialect fake, end to end: a client (OpenAI Chat and the
``anthropic`` SDK) calls oneplan, oneplan calls a fake speaking the provider's dialect, the
fake reports its cache reads and writes the way that provider does, and the ledger must hold
the same classes, priced by hand.

Every case scripts the same billed prompt: 1,000 input tokens of which 600 read from the cache
and 300 written to it (100 of them with a one-hour lifetime), and 200 output tokens. What the
gateway can know depends on what the provider reports: an upstream with no field for writes
(OpenAI, vLLM, Zhipu, Kimi, DeepSeek, Responses) bills them as plain input, so they are
uncached input there; DashScope and MiniMax have 5-minute writes only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import pytest

from oneplan.console import queries
from oneplan.protocols.canonical import Usage
from oneplan.routing.catalog import ModelEntry
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

# Prices per million tokens.
INPUT, CACHED, WRITE, WRITE_1H, OUTPUT = 2.0, 0.2, 2.5, 4.0, 8.0


@dataclass(frozen=True)
class Case:
    fake: str
    kind: str
    dialect: str
    model: str
    # What the ledger must hold: (uncached, cache read, cache write, of them 1 h)
    classes: tuple[int, int, int, int]
    cost: float  # dollars, computed by hand from the classes and the prices above


# uncached 400 x 2 + read 600 x 0.2 + output 200 x 8 = 800 + 120 + 1,600 = 2,520 per million
NO_WRITES = ((400, 600, 0, 0), 0.002520)
# uncached 100 x 2 + read 600 x 0.2 + 5 min writes 300 x 2.5 + output 1,600 = 200 + 120 + 750 + 1,600
WRITES_5M = ((100, 600, 300, 0), 0.002670)
# uncached 200 + read 120 + 5 min writes 200 x 2.5 = 500 + 1 h writes 100 x 4 = 400 + output 1,600
WRITES_1H = ((100, 600, 300, 100), 0.002820)

CASES = [
    Case("openai", "openai-compatible", "openai", "qwen3-32b", *NO_WRITES),
    Case("deepseek", "openai-compatible", "openai", "deepseek-chat", *NO_WRITES),
    Case("dashscope", "dashscope", "openai", "qwen3.5-plus", *WRITES_5M),
    Case("zhipu", "zhipu", "openai", "glm-5", *NO_WRITES),
    Case("moonshot", "moonshot", "openai", "kimi-k2.6", *NO_WRITES),
    Case("minimax", "minimax", "openai", "MiniMax-M2.5", *NO_WRITES),
    Case("anthropic", "anthropic-compatible", "anthropic", "claude-sonnet-4-5", *WRITES_1H),
    Case("anthropic-dashscope", "dashscope", "anthropic", "qwen3.5-plus", *WRITES_5M),
    Case("anthropic-minimax", "minimax", "anthropic", "MiniMax-M2.5", *WRITES_5M),
    Case("anthropic-moonshot", "moonshot", "anthropic", "kimi-k2.6", *NO_WRITES),
    Case("anthropic-zhipu", "zhipu", "anthropic", "glm-5", *NO_WRITES),
    Case("responses", "responses-compatible", "responses", "gpt-5", *NO_WRITES),
]


def catalog(up: FakeUpstream, case: Case) -> str:
    return f"""
[providers.up]
kind = "{case.kind}"
dialect = "{case.dialect}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"

[models."{case.model}"]
provider = "up"
input_price = {INPUT}
cached_input_price = {CACHED}
cache_write_price = {WRITE}
cache_write_1h_price = {WRITE_1H}
output_price = {OUTPUT}
credits = {{ input = 6.9, cached_input = 1.7, cache_write = 8.0, output = 24 }}

[plans.pro]
requests_per_5h = 100
"""


@pytest.fixture(params=CASES, ids=[c.fake for c in CASES])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, FakeUpstream, Case]]:
    case: Case = request.param
    with FakeUpstream(dialect=case.fake) as up, Gateway(tmp_path, catalog(up, case)) as gw:
        yield gw, up, case


def script(up: FakeUpstream, times: int = 1) -> None:
    up.reply("cached answer", usage=(1000, 200), cached=600, cache_write=300, cache_write_1h=100, times=times)


def classes(row: dict[str, object]) -> tuple[int, int, int]:
    return (
        int(row["input_tokens"]) - int(row["cached_tokens"]) - int(row["cache_write_tokens"]),  # type: ignore[arg-type]
        int(row["cached_tokens"]),  # type: ignore[arg-type]
        int(row["cache_write_tokens"]),  # type: ignore[arg-type]
    )


def test_cache_classes_and_cost_match_hand_computed_values(setup: tuple[Gateway, FakeUpstream, Case]) -> None:
    gw, up, case = setup
    uncached, read, write, write_1h = case.classes
    script(up, times=4)
    # OpenAI Chat, whole and streamed.
    for stream in (False, True):
        body = {"model": case.model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        r = httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.key}"}, timeout=30)
        assert r.status_code == 200, r.text
        if not stream:
            usage = r.json()["usage"]
            assert usage["prompt_tokens"] == 1000 and usage["completion_tokens"] == 200
            assert usage["prompt_tokens_details"]["cached_tokens"] == read
            assert usage["prompt_tokens_details"].get("cache_write_tokens", 0) == write
    # The anthropic SDK, whole and streamed: Anthropic's input_tokens exclude both cache counts.
    c = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    msg = c.messages.create(model=case.model, max_tokens=256, messages=[{"role": "user", "content": "hi"}])
    with c.messages.stream(model=case.model, max_tokens=256, messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    for m in (msg, final):
        assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (
            uncached, read, write,
        )
        assert m.usage.output_tokens == 200
        # The lifetime split: Anthropic's own streams carry it in message_start only, before a
        # translated upstream has reported anything, so the SDK sees it in whole answers.
        if write_1h and m is msg:
            assert m.usage.cache_creation is not None
            assert (m.usage.cache_creation.ephemeral_5m_input_tokens, m.usage.cache_creation.ephemeral_1h_input_tokens) == (
                write - write_1h, write_1h,
            )
    rows = gw.ledger()
    assert [r["status"] for r in rows] == ["ok"] * 4
    for row in rows:
        assert row["input_tokens"] == 1000 and row["output_tokens"] == 200
        assert classes(row) == (uncached, read, write)
        assert row["cost"] == pytest.approx(case.cost, rel=1e-12)
        # Credits weigh the same classes (GLM-5.3-like coefficients; writes at 8 credits).
        assert row["credits"] == pytest.approx(uncached * 6.9 + read * 1.7 + write * 8.0 + 200 * 24)


# -- pricing, as a pure function ------------------------------------------------------------


def entry(**prices: float) -> ModelEntry:
    return ModelEntry(name="m", deployments=(), **prices)


def test_each_class_has_its_price_and_unset_prices_fall_back() -> None:
    usage = Usage.from_exclusive(100, 200, read=600, write=300, write_1h=100)
    priced = entry(input_price=INPUT, cached_input_price=CACHED, cache_write_price=WRITE,
                   cache_write_1h_price=WRITE_1H, output_price=OUTPUT)
    assert priced.cost(usage) == pytest.approx(0.002820)
    # No cache prices: reads and writes cost what input costs (the provider's own default).
    plain = entry(input_price=INPUT, output_price=OUTPUT)
    assert plain.cost(usage) == pytest.approx((1000 * INPUT + 200 * OUTPUT) / 1e6)
    # One-hour writes default to the write price, not the input price.
    five = entry(input_price=INPUT, cache_write_price=WRITE, output_price=OUTPUT)
    assert five.cost(usage) == pytest.approx((700 * INPUT + 300 * WRITE + 200 * OUTPUT) / 1e6)
    # The positional form (input, output, cached) still prices a usage without writes.
    assert priced.cost(1000, 200, 600) == pytest.approx(0.002520)
    # A worst case reserved in advance must price input at its dearest class.
    assert (priced.max_input_price, plain.max_input_price, five.max_input_price) == (WRITE_1H, INPUT, WRITE)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # DeepSeek with only the two halves (no prompt_tokens).
        ({"prompt_cache_hit_tokens": 70, "prompt_cache_miss_tokens": 30, "completion_tokens": 5}, (100, 70, 0, 0)),
        # Kimi and MiniMax spelling the cache counts the Anthropic way on Chat Completions.
        ({"prompt_tokens": 100, "completion_tokens": 5, "cache_read_input_tokens": 40}, (100, 40, 0, 0)),
        # DashScope's explicit cache: writes inside prompt_tokens.
        (
            {"prompt_tokens": 3019, "completion_tokens": 104, "prompt_tokens_details": {
                "cached_tokens": 0, "cache_creation_input_tokens": 1500,
                "cache_creation": {"ephemeral_5m_input_tokens": 1500}, "cache_type": "ephemeral"}},
            (3019, 0, 1500, 0),
        ),
        # Only the split reported.
        ({"prompt_tokens": 50, "prompt_tokens_details": {"cache_creation": {"ephemeral_1h_input_tokens": 20}}}, (50, 0, 20, 20)),
        # Cache counts bigger than the prompt cannot be inside it: they are added, never negative.
        ({"prompt_tokens": 10, "cache_read_input_tokens": 40}, (50, 40, 0, 0)),
        # Garbage is zero.
        ({"prompt_tokens": "many", "prompt_tokens_details": {"cached_tokens": -3}}, (0, 0, 0, 0)),
    ],
)
def test_chat_usage_spellings(raw: dict[str, object], expected: tuple[int, int, int, int]) -> None:
    from oneplan.providers.base import ProviderSettings
    from oneplan.providers.openai_compatible import OpenAICompatible

    provider = OpenAICompatible(ProviderSettings(name="p", kind="openai-compatible", base_url="http://127.0.0.1:9/v1"))
    usage = provider.parse_usage(raw)
    assert usage is not None
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == expected
    assert usage.uncached_input_tokens == expected[0] - expected[1] - expected[2]


def test_rollup_and_console_totals_include_cache_writes(tmp_path: Path) -> None:
    case = CASES[6]  # Anthropic: every class, one-hour writes too
    with FakeUpstream(dialect=case.fake) as up, Gateway(tmp_path, catalog(up, case)) as gw:
        script(up, times=3)
        c = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        for _ in range(3):
            c.messages.create(model=case.model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        rows = gw.ledger()
        (total,) = queries.breakdown(gw.state.db, "model")
        assert (total["requests"], total["input_tokens"], total["cached_tokens"], total["cache_write_tokens"]) == (
            3, 3000, 1800, 900,
        )
        assert total["cost"] == pytest.approx(3 * case.cost)
        (recent,) = {r["cache_write_tokens"] for r in queries.recent(gw.state.db, rows[0]["user_id"])}
        assert recent == 300
        metrics = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
        assert f'oneplan_tokens_total{{kind="cache_write",model="{case.model}",provider="up"}} 900.0' in metrics
        assert f'oneplan_tokens_total{{kind="cached",model="{case.model}",provider="up"}} 1800.0' in metrics
