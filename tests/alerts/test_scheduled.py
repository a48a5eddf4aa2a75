"""What the scheduler and the evaluator find beyond thresholds, through the real gateway with
an injected clock: a forecast that the window runs out soon, a runaway key against its 7-day
median, and a provider whose circuit opens (the operator's)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest

from oneplan.metering.ledger import LEDGER_DEFAULTS
from tests.alerts.receivers import HttpReceiver, wait_for
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway, ManualClock

T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()


def hook_toml(url: str, rules: str = "", extra: str = "") -> str:
    return f"""
[alerts]
poll_seconds = 0.02
retry_base_seconds = 0.01
{extra}

[alerts.channels.ops]
kind = "webhook"
url = "{url}/ops"
{rules}
"""


def ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])


def test_forecast_warns_before_the_window_runs_out(tmp_path: Path, upstream: FakeUpstream) -> None:
    clock = ManualClock(T0)
    extra = hook_toml("", extra='thresholds = [100]\nforecast_minutes = 30\n\n[alerts.plans.pro]\nchannels = ["ops"]')
    with HttpReceiver() as hook:
        toml = catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 100", extra=extra.replace('url = "/ops"', f'url = "{hook.url}/ops"'))
        with Gateway(tmp_path, toml, clock=clock) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            for _ in range(30):  # 30 requests over 10 minutes: 3 a minute, 70 left = 23 min
                ask(client)
                clock.advance(20)
                wait_for(lambda: not gw.state.alerts._dirty and not gw.state.alerts._wake.is_set())
            wait_for(hook.delivered, what="the forecast")
            wait_for(lambda: gw.state.alerts.outbox.status()["counts"]["pending"] == 0)
    (body,) = [r.json for r in hook.requests]
    assert body["event"] == "quota.forecast" and body["window"] == "5h"
    assert 20 <= body["minutes_left"] <= 30  # the first reading under 30 minutes
    assert "runs out in about" in body["title"]


def test_runaway_key_against_its_seven_day_median(tmp_path: Path, upstream: FakeUpstream) -> None:
    clock = ManualClock(T0)
    rules = '\n[[alerts.rules]]\nname = "leaks"\nevent = "runaway"\nfactor = 5\nchannels = ["ops"]\n'
    with HttpReceiver() as hook:
        toml = catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 1000", extra=hook_toml(hook.url, rules))
        with Gateway(tmp_path, toml, clock=clock) as gw:
            alice = gw.state.db.get_user("alice")
            key_id = gw.state.db.list_keys("alice")[0]["id"]

            def row(ts: float) -> dict[str, object]:
                return {
                    **LEDGER_DEFAULTS, "id": secrets.token_hex(8), "ts": ts, "user_id": alice.id, "key_id": key_id,
                    "protocol": "openai_chat", "model": "m1", "stream": False, "status": "ok", "http_status": 200,
                    "weight": 1, "latency_ms": 5.0, "cost": 0.001,
                }

            # 8 requests an hour, every 6 hours for a week: the median active hour is 8.
            gw.state.db.insert_ledger([row(T0 - h * 3600 - 60) for h in range(6, 168, 6) for _ in range(8)])
            scheduler = gw.state.alerts.scheduler
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            for _ in range(40):  # 40 real requests in the last hour: 5 times the median
                ask(client)
            gw.ledger()
            gw.run(scheduler.tick())
            assert gw.state.alerts.outbox.events() == []  # 40 is not above 5 x 8
            ask(client)
            gw.ledger()
            gw.run(scheduler.tick())
            gw.run(scheduler.tick())  # once a day per key, not once a tick
            wait_for(lambda: len(hook.delivered()) >= 2, what="the key's and the user's runaway alerts")
            wait_for(lambda: gw.state.alerts.outbox.status()["counts"]["pending"] == 0)
    bodies = sorted((r.json for r in hook.requests), key=lambda b: b["scope"])
    assert [(b["scope"], b["metric"], b["last_hour"], b["median"]) for b in bodies] == [
        (key_id, "requests", 41, 8), ("user", "requests", 41, 8),
    ]
    assert bodies[0]["event"] == "usage.runaway" and "leaked key" in bodies[0]["text"]


@pytest.mark.timeout(60)
def test_an_open_circuit_alerts_the_operator_once(tmp_path: Path, upstream: FakeUpstream) -> None:
    rules = '\n[[alerts.rules]]\nname = "providers"\nevent = "provider"\nerror_rate = 0.5\nchannels = ["ops"]\n'
    routing = "\n[routing]\nretries = 0\ncircuit_failures = 2\ncircuit_cooldown_seconds = 600\n"
    with HttpReceiver() as hook:
        extra = hook_toml(hook.url, rules, extra="provider_min_requests = 2") + routing
        with Gateway(tmp_path, catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 100", extra=extra)) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            upstream.fault("500", times=3)
            for _ in range(3):
                with pytest.raises(openai.APIStatusError):
                    ask(client)
            scheduler = gw.state.alerts.scheduler
            gw.run(scheduler.tick())
            gw.run(scheduler.tick())
            wait_for(lambda: len(hook.delivered()) >= 2, what="circuit and error-rate alerts")
            wait_for(lambda: gw.state.alerts.outbox.status()["counts"]["pending"] == 0)
            events = sorted(e["event"] for e in gw.state.alerts.outbox.events())
    assert events == ["provider.circuit_open", "provider.error_rate"]
    circuit = next(r.json for r in hook.requests if r.json["event"] == "provider.circuit_open")
    assert circuit["provider"] == "up" and "circuit of up/up-model-1 opened" in circuit["text"]
