"""Quota alerts through the real gateway: requests cross 80 % and 100 % of a plan window and
each crossing reaches a real webhook receiver, a real SMTP server and an SMS gateway fake once,
with the right figures and a verifiable signature; a failing receiver gets the alert after
retries; one that never answers does not slow model requests."""

from __future__ import annotations

import hashlib
import hmac
import statistics
import time
from pathlib import Path

import openai
import pytest

from oneplan.store.db import Database
from tests.alerts.receivers import HttpReceiver, SmtpServer, wait_for
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

SECRET = "whsec-test-0123456789"


def alerts_toml(
    hook: str, *, smtp_port: int | None = None, sms: str | None = None, extra: str = "", timeout: float = 2
) -> str:
    channels = ['"hook"']
    text = f"""
[alerts]
console_url = "https://oneplan.example/console"
forecast_minutes = 0
poll_seconds = 0.02
retry_base_seconds = 0.01
timeout_seconds = {timeout}
{extra}

[alerts.channels.hook]
kind = "webhook"
url = "{hook}/alerts"
secret = "env:ONEPLAN_TEST_HOOK_SECRET"
"""
    if smtp_port is not None:
        channels.append('"mail"')
        text += f"""
[alerts.channels.mail]
kind = "email"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "oneplan@example.test"
to = ["ops@example.test"]
"""
    if sms is not None:
        channels.append('"sms"')
        text += f"""
[alerts.channels.sms]
kind = "sms"
url = "{sms}/send"
to = ["+8613800000000"]
template = '{{"phone": "{{to}}", "message": "{{text}}"}}'
headers = {{ authorization = "env:ONEPLAN_TEST_SMS_TOKEN" }}
"""
    text += f"\n[alerts.plans.pro]\nchannels = [{', '.join(channels)}]\n"
    return text


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEPLAN_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("ONEPLAN_TEST_SMS_TOKEN", "Bearer sms-token")


def ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])


def test_each_crossing_alerts_once_on_every_channel_with_the_figures(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = "[plans.pro]\nrequests_per_5h = 10"
    with HttpReceiver() as hook, HttpReceiver() as sms, SmtpServer() as smtp:
        toml = catalog_for(upstream, plan=plan, extra=alerts_toml(hook.url, smtp_port=smtp.port, sms=sms.url))
        with Gateway(tmp_path, toml) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            for _ in range(10):
                ask(client)
            for _ in range(3):  # refused: the window is used up; no new crossing
                with pytest.raises(openai.RateLimitError):
                    ask(client)
            wait_for(lambda: len(hook.delivered()) >= 2 and len(smtp.messages) >= 2 and len(sms.delivered()) >= 2,
                     what="both crossings on all three channels")
            status = wait_for(lambda: (s := gw.state.alerts.outbox.status())["counts"]["pending"] == 0 and s)
            events = gw.state.alerts.outbox.events()

    assert status["counts"] == {"pending": 0, "sent": 6, "failed": 0}
    assert sorted(e["threshold"] for e in events) == [80, 100]
    assert len(hook.requests) == 2 and len(smtp.messages) == 2 and len(sms.requests) == 2

    bodies = sorted((r.json for r in hook.requests), key=lambda b: b["threshold"])
    eighty, hundred = bodies
    assert eighty["event"] == "quota.threshold" and eighty["user"] == "alice" and eighty["window"] == "5h"
    assert eighty["limit"] == 10 and 8 <= eighty["used"] <= 10
    assert hundred["used"] == 10 and hundred["limit"] == 10 and hundred["percent"] == 100.0
    assert hundred["resets_at"] > time.time() + 4 * 3600  # the 5-hour window frees up in ~5 h
    assert hundred["link"] == "https://oneplan.example/console/usage"
    assert "alice" in hundred["text"] and "10 / 10" in hundred["text"]
    for request in hook.requests:  # the HMAC verifies, over the timestamp and the exact body
        t, v1 = (part.split("=", 1)[1] for part in request.headers["X-Oneplan-Signature"].split(","))
        assert t == request.headers["X-Oneplan-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, expected)
        assert request.headers["Idempotency-Key"] == request.json["id"]
    assert len({r.headers["Idempotency-Key"] for r in hook.requests}) == 2

    subjects = sorted(str(m["Subject"]) for m in smtp.messages)
    assert subjects == [
        "oneplan: alice has used 100 % of the 5-hour request quota",
        "oneplan: alice has used 80 % of the 5-hour request quota",
    ]
    mail = next(m for m in smtp.messages if "100 %" in str(m["Subject"]))
    assert mail.get_body(("plain",)).get_content().startswith("alice (plan pro) has used 100 % of the 5-hour request quota: 10 / 10.")
    assert "10 / 10" in mail.get_body(("html",)).get_content()
    assert str(mail["Message-ID"]).startswith("<dlv_")

    for request in sms.requests:
        assert request.headers["Authorization"] == "Bearer sms-token"
        assert request.json["phone"] == "+8613800000000"
        assert request.json["message"].startswith("oneplan: alice has used ")


def test_a_receiver_failing_five_times_then_succeeding_gets_the_alert(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = "[plans.pro]\nrequests_per_5h = 4"
    with HttpReceiver(fail_first=5) as hook:
        toml = catalog_for(upstream, plan=plan, extra=alerts_toml(hook.url, extra="thresholds = [100]"))
        with Gateway(tmp_path, toml) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            for _ in range(4):
                ask(client)
            wait_for(hook.delivered, what="the sixth attempt")
            status = wait_for(lambda: (s := gw.state.alerts.outbox.status())["counts"]["sent"] == 1 and s)
    assert [r.answered for r in hook.requests] == [503] * 5 + [200]
    assert len({r.headers["Idempotency-Key"] for r in hook.requests}) == 1  # one delivery, retried
    assert status["counts"] == {"pending": 0, "sent": 1, "failed": 0}


def test_a_delivery_that_keeps_failing_ends_failed_and_visible(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = "[plans.pro]\nrequests_per_5h = 2"
    with HttpReceiver(fail_first=1000) as hook:
        extra = "thresholds = [100]\nmax_attempts = 3"
        with Gateway(tmp_path, catalog_for(upstream, plan=plan, extra=alerts_toml(hook.url, extra=extra))) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            ask(client)
            ask(client)
            status = wait_for(lambda: (s := gw.state.alerts.outbox.status())["counts"]["failed"] == 1 and s)
    assert len(hook.requests) == 3
    (failed,) = status["open"]
    assert failed["state"] == "failed" and failed["attempts"] == 3 and failed["channel"] == "hook"
    assert "HTTP 503" in failed["last_error"]


def _p50(gw: Gateway, n: int) -> float:
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
    ask(client)  # warm the connection
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ask(client)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_a_receiver_that_never_answers_does_not_slow_model_requests(tmp_path: Path, upstream: FakeUpstream) -> None:
    n = 40
    # A crossing every 2 requests: deliveries are in flight (and hanging) the whole time.
    thresholds = ", ".join(str(p) for p in range(5, 101, 5))
    plan = f"[plans.pro]\nrequests_per_5h = {n + 1}"
    with Gateway(tmp_path / "plain", catalog_for(upstream, plan=plan)) as gw:
        without = _p50(gw, n)
    with HttpReceiver() as hook:
        hook.hold.set()  # accept, never answer
        extra = alerts_toml(hook.url, extra=f"thresholds = [{thresholds}]", timeout=30)
        with Gateway(tmp_path / "hung", catalog_for(upstream, plan=plan, extra=extra)) as gw:
            with_hung = _p50(gw, n)
            assert wait_for(lambda: len(hook.requests) >= 4, what="deliveries hanging at the receiver")
            assert not hook.delivered()
            hook.hold.clear()
    print(f"p50 without alerts {1000 * without:.2f} ms, with a never-answering receiver {1000 * with_hung:.2f} ms")
    assert with_hung < 3 * without + 0.010


def test_user_settings_by_api_with_their_key(tmp_path: Path, upstream: FakeUpstream) -> None:
    import httpx

    plan = "[plans.pro]\nrequests_per_5h = 10"
    with HttpReceiver() as mine, HttpReceiver() as ops:
        with Gateway(tmp_path, catalog_for(upstream, plan=plan, extra=alerts_toml(ops.url))) as gw:
            url, auth = f"{gw.base_url}/v1/alerts", {"authorization": f"Bearer {gw.key}"}
            bad = httpx.put(url, headers=auth, json={"channels": [{"kind": "webhook", "url": mine.url, "secret": "env:HOME"}]})
            assert bad.status_code == 400 and "operator" in bad.json()["error"]["message"]
            assert httpx.put(url, headers=auth, json={"thresholds": [0]}).status_code == 400
            settings = {"thresholds": [50], "digest": True, "channels": [{"kind": "webhook", "url": mine.url + "/me", "secret": "s3cret"}]}
            put = httpx.put(url, headers=auth, json=settings)
            assert put.status_code == 200, put.text
            assert "s3cret" not in put.text and put.json()["settings"]["thresholds"] == [50]
            bob = gw.create_user("bob", "pro")
            seen = httpx.get(url, headers={"authorization": f"Bearer {bob}"}).json()
            assert seen["settings"]["channels"] == [] and seen["events"] == []
            assert httpx.get(url).status_code == 401
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            for _ in range(5):
                ask(client)
            wait_for(mine.delivered, what="the user's own 50 % alert")
            (body,) = [r.json for r in mine.requests]
            assert body["threshold"] == 50 and body["user"] == "alice"
            wait_for(lambda: gw.state.alerts.outbox.status()["counts"]["pending"] == 0)
            assert not ops.requests  # the plan's 80 % is not crossed yet
            events = httpx.get(url, headers=auth).json()["events"]
            assert [e["event"] for e in events] == ["quota.threshold"]
            admin = httpx.get(f"{gw.base_url}/admin/alerts", headers={"authorization": f"Bearer {gw.admin_key}"})
            assert admin.json()["counts"]["sent"] == 1
            assert httpx.get(f"{gw.base_url}/admin/alerts", headers=auth).status_code == 401
    db = Database.open(gw.data_dir)
    try:
        assert db.get_user("alice") is not None
    finally:
        db.close()


def test_a_token_budget_alerts_on_the_settled_usage(tmp_path: Path, upstream: FakeUpstream) -> None:
    """Budgets are charged at settlement: the alert reads the window after it. A budget is
    never overshot (each request reserves its worst case), so it ends short of 100 %: the last
    requests that fit are refused, and the alerts below that fire on the settled usage."""
    plan = "[plans.pro]\ntokens_per_month = 300"
    with HttpReceiver() as hook:
        extra = alerts_toml(hook.url, extra="thresholds = [50, 75]")
        with Gateway(tmp_path, catalog_for(upstream, plan=plan, extra=extra)) as gw:
            client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
            used = 0
            while True:
                try:
                    reply = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
                except openai.RateLimitError:
                    break
                used += reply.usage.total_tokens
            wait_for(lambda: len(hook.delivered()) == 2, what="50 % and 75 % of the token budget")
    bodies = sorted((r.json for r in hook.requests), key=lambda b: b["threshold"])
    assert [(b["window"], b["threshold"]) for b in bodies] == [("tokens_month", 50), ("tokens_month", 75)]
    assert 150 <= bodies[0]["used"] < 300 and 225 <= bodies[1]["used"] <= used <= 300
    assert "monthly token budget" in bodies[1]["title"]
