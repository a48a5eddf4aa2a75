"""Failover, retries, timeouts and ledger exactness, end to end: the official openai SDK against
the real gateway under uvicorn, against fake upstreams on 127.0.0.1 that misbehave on cue.

One gateway and its fakes serve the whole module; each test looks only at what it changed (the
ledger rows it added, the tokens the fakes served since it started) and every deployment's
health is reset between tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

TEXT = "The quick brown fox jumps over the lazy dog."
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("429", {}),
    ("429", {"retry_after": 0.2}),
    ("500", {}),
    ("503", {}),
    ("hang", {}),
    ("drop_mid_stream", {"after": 0}),
    ("malformed_json", {"after": 0}),
]
FAULT_IDS = [k + ("-retry-after" if kw.get("retry_after") else "") for k, kw in FAULTS]


def provider(name: str, kind: str, up: FakeUpstream) -> str:
    return f"""
[providers.{name}]
kind = "{kind}"
base_url = "{up.base_url}"
api_key = "{up.api_key}"
[providers.{name}.timeouts]
connect = 1
first_token = 0.5
idle = 0.5
total = 10
"""


def catalog(ups: dict[str, FakeUpstream]) -> str:
    return (
        """
[routing]
retries = 2
backoff_seconds = 0.01
backoff_max_seconds = 0.05
deadline_seconds = 5
circuit_failures = 1000
"""
        + provider("qwen-a", "dashscope", ups["qwen-a"])
        + provider("qwen-b", "dashscope", ups["qwen-b"])
        + provider("solo", "dashscope", ups["solo"])
        + provider("flaky", "dashscope", ups["flaky"])
        + provider("glm", "zhipu", ups["glm"])
        + """
[models."qwen3.5-plus"]
# qwen-a first, practically always: the fault lands where the test put it.
providers = [{provider = "qwen-a", weight = 1000}, {provider = "qwen-b", weight = 0.001}]
input_price = 1.0
output_price = 2.0

[models."solo-model"]
provider = "solo"
upstream = "qwen3.5-plus"

[models."flaky-model"]
provider = "flaky"
upstream = "qwen3.5-plus"
fallbacks = ["glm-5"]

[models."glm-5"]
provider = "glm"

[plans.pro]
requests_per_month = 100000
tokens_per_month = 100000000
models = ["*"]

[plans.nofallback]
requests_per_month = 100000
models = ["flaky-model"]
"""
    )


@dataclass
class Env:
    gw: Gateway
    ups: dict[str, FakeUpstream]
    client: openai.OpenAI

    def rows_after(self, before: int) -> list[dict[str, Any]]:
        return self.gw.ledger()[before:]

    def month_used(self, user: str = "alice") -> tuple[float, float]:
        record = self.gw.state.db.get_user(user)
        assert record is not None
        plan = self.gw.state.catalog.plans[record.plan]
        states = self.gw.run(self.gw.state.counters.states(record.id, plan))
        by = {s.window: s.used for s in states}
        return by["month"], by.get("tokens_month", 0.0)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    names = {"qwen-a": "dashscope", "qwen-b": "dashscope", "solo": "dashscope", "flaky": "dashscope", "glm": "zhipu"}
    ups = {name: FakeUpstream(dialect=d) for name, d in names.items()}
    for up in ups.values():
        up.start()
    try:
        with Gateway(tmp_path_factory.mktemp("failover"), catalog(ups)) as gw:
            client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0, timeout=20)
            yield Env(gw, ups, client)
    finally:
        for up in ups.values():
            up.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    async def reset() -> None:
        for h in env.gw.state.router.health:
            h.reset()

    env.gw.run(reset())
    yield
    for up in env.ups.values():
        up.clear_faults()


def ask(env: Env, model: str, stream: bool) -> tuple[str, str, httpx.Headers]:
    """One question through the SDK: (answer text, answer's model field, response headers)."""
    messages: Any = [{"role": "user", "content": "hello"}]
    if not stream:
        raw = env.client.chat.completions.with_raw_response.create(model=model, messages=messages)
        done = raw.parse()
        return done.choices[0].message.content or "", done.model, raw.headers
    with env.client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, stream=True
    ) as response:
        text, served_model = "", ""
        for chunk in response.parse():
            served_model = chunk.model
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        return text, served_model, response.headers


# -- one deployment fails, the other answers ----------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("kind", "options"), FAULTS, ids=FAULT_IDS)
def test_a_fault_on_one_deployment_is_invisible_and_charged_once(
    env: Env, kind: str, options: dict[str, Any], stream: bool
) -> None:
    a, b = env.ups["qwen-a"], env.ups["qwen-b"]
    before_rows, before_tokens = len(env.gw.ledger()), b.served_tokens.total
    before_a = a.served_tokens.total
    used_before, tokens_before = env.month_used()
    a.fault(kind, **options)
    b.reply(TEXT)

    text, model, headers = ask(env, "qwen3.5-plus", stream)

    assert text == TEXT
    assert model == "qwen3.5-plus"
    assert headers["x-oneplan-served-by"] == "model=qwen3.5-plus; provider=qwen-b"
    rows = env.rows_after(before_rows)
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["provider"], row["attempts"]) == ("ok", "qwen-b", 2)
    served = b.served_tokens.total - before_tokens
    assert served > 0 and row["input_tokens"] + row["output_tokens"] == served
    assert a.served_tokens.total == before_a  # the faulty one billed nothing
    used, tokens = env.month_used()
    assert (used - used_before, tokens - tokens_before) == (1, served)


def test_a_fallback_model_answers_when_the_plan_includes_it(env: Env) -> None:
    env.ups["flaky"].fault("503")
    env.ups["glm"].reply(TEXT)
    before = len(env.gw.ledger())

    text, model, headers = ask(env, "flaky-model", stream=True)

    assert (text, model) == (TEXT, "glm-5")
    assert headers["x-oneplan-served-by"] == "model=glm-5; provider=glm"
    (row,) = env.rows_after(before)
    assert (row["status"], row["model"], row["provider"]) == ("ok", "glm-5", "glm")


def test_a_fallback_model_outside_the_plan_is_never_used(env: Env) -> None:
    key = env.gw.create_user("bob", "nofallback")
    client = openai.OpenAI(base_url=env.gw.base_url + "/v1", api_key=key, max_retries=0)
    env.ups["flaky"].fault("503", times=3)
    glm_before = len(env.ups["glm"].requests)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="flaky-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    assert len(env.ups["glm"].requests) == glm_before
    assert env.month_used("bob")[0] == 0


# -- nothing healthy left ----------------------------------------------------------------------


NO_ALTERNATIVE = [
    ("429", {}, 429),
    ("500", {}, 503),
    ("503", {}, 503),
    ("hang", {}, 504),
    ("drop_mid_stream", {"after": 0}, 503),
    ("malformed_json", {"after": 0}, 503),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("kind", "options", "status"), NO_ALTERNATIVE, ids=[f[0] for f in NO_ALTERNATIVE])
def test_with_no_alternative_the_client_gets_a_proper_error_and_pays_nothing(
    env: Env, kind: str, options: dict[str, Any], status: int, stream: bool
) -> None:
    solo = env.ups["solo"]
    solo.fault(kind, times=3, **options)  # the first try and both retries
    before, requests_before = len(env.gw.ledger()), len(solo.requests)
    used_before = env.month_used()

    with pytest.raises(openai.APIStatusError) as caught:
        ask(env, "solo-model", stream)

    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and body.get("message")  # the SDK unwraps {"error": {...}}
    assert len(solo.requests) - requests_before == 3  # tried, then retried twice
    (row,) = env.rows_after(before)
    assert (row["status"], row["http_status"], row["attempts"]) == ("failed", status, 3)
    assert row["input_tokens"] == row["output_tokens"] == 0 and row["cost"] == 0
    assert env.month_used() == used_before


def test_retry_after_is_honoured_on_the_only_deployment(env: Env) -> None:
    solo = env.ups["solo"]
    solo.fault("429", retry_after=0.4)
    solo.reply(TEXT, times=2)  # the fake spends an answer on the refused request too
    started = time.monotonic()
    text, _model, _headers = ask(env, "solo-model", stream=False)
    assert text == TEXT
    assert time.monotonic() - started >= 0.4
    assert env.gw.ledger()[-1]["attempts"] == 2


def test_a_retry_after_beyond_the_deadline_fails_now_with_the_providers_429(env: Env) -> None:
    solo = env.ups["solo"]
    solo.fault("429", retry_after=30)
    requests_before = len(solo.requests)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        ask(env, "solo-model", stream=True)
    assert time.monotonic() - started < 2
    assert caught.value.response.headers["retry-after"] == "30"
    assert len(solo.requests) - requests_before == 1


@pytest.mark.parametrize(("kind", "after"), [("drop_mid_stream", 3), ("malformed_json", 3), ("stream_error", 3)])
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error(env: Env, kind: str, after: int) -> None:
    """Too late to fail over: the client must see an error, never an answer that looks whole."""
    a = env.ups["qwen-a"]
    a.fault(kind, after=after)
    a.reply(TEXT)
    before = len(env.gw.ledger())
    used_before = env.month_used()
    received = []
    with pytest.raises(openai.APIError):
        stream = env.client.chat.completions.create(
            model="qwen3.5-plus", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for chunk in stream:
            received.append(chunk)
    assert received  # the stream had started
    assert all(c.choices[0].finish_reason is None for c in received if c.choices)
    (row,) = env.rows_after(before)
    assert (row["status"], row["provider"]) == ("failed", "qwen-a")
    assert env.month_used() == used_before


def test_an_idle_stream_times_out_into_an_error(env: Env) -> None:
    # Idle timeout is 0.5 s. Only a role chunk arrives before the stall, which is not yet
    # content, so the router tries the other deployment - which stalls too.
    for name in ("qwen-a", "qwen-b"):
        env.ups[name].fault("drip", delay=2.0, times=3)
    before = len(env.gw.ledger())
    with pytest.raises(openai.APIError):
        for _chunk in env.client.chat.completions.create(
            model="qwen3.5-plus", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    (row,) = env.rows_after(before)
    assert (row["status"], row["error_class"]) == ("failed", "UpstreamTimeout")


# -- other inbound protocols -------------------------------------------------------------------


def test_responses_api_gets_its_own_error_shapes(env: Env) -> None:
    solo = env.ups["solo"]
    solo.fault("503", times=3)
    with pytest.raises(openai.APIStatusError) as caught:
        env.client.responses.create(model="solo-model", input="hi")
    assert caught.value.status_code == 503
    solo.fault("drop_mid_stream", after=3)
    before = len(env.gw.ledger())
    types = [event.type for event in env.client.responses.create(model="solo-model", input="hi", stream=True)]
    assert types[-1] == "response.failed" and "response.completed" not in types
    assert env.rows_after(before)[0]["status"] == "failed"


def test_anthropic_messages_get_an_error_event(env: Env) -> None:
    probe = httpx.post(env.gw.base_url + "/v1/messages", json={}, headers={"x-api-key": env.gw.key})
    if probe.status_code == 404:
        pytest.skip("/v1/messages is not wired yet")
    import anthropic

    client = anthropic.Anthropic(base_url=env.gw.base_url, api_key=env.gw.key, max_retries=0)
    solo = env.ups["solo"]
    solo.fault("503", times=3)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="solo-model", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    solo.fault("drop_mid_stream", after=3)
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(
            model="solo-model", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as events:
            for _event in events:
                pass


# -- breaker and disconnects -------------------------------------------------------------------


def test_a_client_that_hangs_up_cancels_the_upstream_stream(env: Env) -> None:
    a = env.ups["qwen-a"]
    a.fault("drip", delay=0.3)
    a.reply(" ".join(["word"] * 50))
    cancelled = a.cancelled
    before = len(env.gw.ledger())
    with httpx.Client(base_url=env.gw.base_url, timeout=10) as http:
        with http.stream(
            "POST", "/v1/chat/completions",
            headers={"authorization": f"Bearer {env.gw.key}"},
            json={"model": "qwen3.5-plus", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as response:
            next(response.iter_lines())  # the stream is flowing
    assert a.wait_until(lambda: a.cancelled == cancelled + 1 and a.active == 0)
    # The row was written as the relay unwound, before it closed the upstream connection.
    rows = env.rows_after(before)
    assert len(rows) == 1
    assert rows[-1]["status"] == "cancelled" and rows[-1]["http_status"] == 499


def test_the_admin_api_shows_each_deployments_circuit(env: Env) -> None:
    env.ups["qwen-a"].fault("500")
    ask(env, "qwen3.5-plus", stream=False)
    reply = httpx.get(env.gw.base_url + "/admin/providers", headers={"authorization": f"Bearer {env.gw.admin_key}"})
    assert reply.status_code == 200
    by = {(d["provider"], d["upstream"]): d for d in reply.json()["data"]}
    a, b = by[("qwen-a", "qwen3.5-plus")], by[("qwen-b", "qwen3.5-plus")]
    assert (a["state"], a["failures"], a["errors"]) == ("closed", 1, {"UpstreamUnavailable": 1})
    assert (b["successes"], b["retries"]) == (1, 1)
    denied = httpx.get(env.gw.base_url + "/admin/providers", headers={"authorization": f"Bearer {env.gw.key}"})
    assert denied.status_code == 401


def test_metrics_count_requests_tokens_errors_and_retries(env: Env) -> None:
    env.ups["qwen-a"].fault("500")
    ask(env, "qwen3.5-plus", stream=True)
    text = httpx.get(env.gw.base_url + "/metrics").text
    assert 'oneplan_requests_total{model="qwen3.5-plus",provider="qwen-b",status="ok"}' in text
    assert 'oneplan_upstream_errors_total{error="UpstreamUnavailable",provider="qwen-a",upstream="qwen3.5-plus"} 1.0' in text
    assert 'oneplan_retries_total{provider="qwen-b",upstream="qwen3.5-plus"} 1.0' in text
    assert "oneplan_time_to_first_token_seconds_bucket" in text
    assert 'oneplan_tokens_total{kind="output",model="qwen3.5-plus",provider="qwen-b"}' in text
    assert "oneplan_open_circuits 0.0" in text


def test_healthz_and_readyz(env: Env) -> None:
    assert httpx.get(env.gw.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(env.gw.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["problems"] == []



def test_the_cli_reports_provider_status_from_the_running_server(env: Env) -> None:
    from click.testing import CliRunner

    from oneplan.cli.main import cli

    env.ups["qwen-a"].fault("503")
    ask(env, "qwen3.5-plus", stream=False)
    runner = CliRunner()
    shown = runner.invoke(cli, ["providers", "status", "--url", env.gw.base_url, "--admin-key", env.gw.admin_key])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split()[:3] == ["PROVIDER", "UPSTREAM", "STATE"]
    qwen_a = next(line for line in lines if line.startswith("qwen-a "))
    assert "closed" in qwen_a and "answered 503" in qwen_a
    refused = runner.invoke(cli, ["providers", "status", "--url", env.gw.base_url, "--admin-key", "nope"])
    assert refused.exit_code == 1 and "ONEPLAN_ADMIN_KEY" in refused.output
