"""The console's reads of the alert endpoints, without a browser: a developer's session sees and
changes their own alert settings (CSRF like every console form; channels kept when the form
omits them), only their own alerts; the operator's session sees the outbox and the team digest,
whose figures equal the ledger's."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from tests.alerts.receivers import wait_for
from tests.alerts.test_digest import START, WEEK, seed
from tests.conftest import catalog_for
from tests.console.support import sign_in
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway, ManualClock

ALERTS = """
[alerts]
forecast_minutes = 0
poll_seconds = 0.02
retry_base_seconds = 0.01
max_attempts = 2
timeout_seconds = 2

[alerts.channels.dead]
kind = "webhook"
url = "http://127.0.0.1:1/alerts"

[alerts.plans.pro]
channels = ["dead"]
"""


def test_developer_session_reads_and_changes_own_alerts(tmp_path: Path, upstream: FakeUpstream) -> None:
    toml = catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 10", extra=ALERTS)
    with Gateway(tmp_path, toml) as gw:
        bob_key = gw.create_user("bob", "pro")
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        for _ in range(8):  # 80 % of alice's 5-hour window
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        key_auth = {"authorization": f"Bearer {gw.key}"}
        hook = {"kind": "webhook", "url": "https://hooks.example.test/alice", "secret": "s3cret-value"}
        assert httpx.put(f"{gw.base_url}/v1/alerts", json={"channels": [hook]}, headers=key_auth).status_code == 200

        alice = sign_in(gw.base_url, gw.key)
        mine = alice.get("/v1/alerts")
        assert mine.status_code == 200, mine.text
        events = mine.json()["events"]
        assert [(e["window"], e["used"], e["limit"]) for e in events] == [("5h", 8, 10)]
        assert mine.json()["settings"]["channels"][0]["url"] == "********"  # never shown back

        # Without the CSRF token, or from another origin, the session changes nothing.
        bare = httpx.Client(base_url=gw.base_url, cookies=alice.cookies)
        assert bare.put("/v1/alerts", json={"thresholds": [50]}).status_code == 403
        assert alice.put("/v1/alerts", json={"thresholds": [50]}, headers={"origin": "https://evil.example"}).status_code == 403
        # The form's PUT: thresholds changed, the channels (not in the form) kept.
        saved = alice.put("/v1/alerts", json={"thresholds": [50, 90], "forecast_minutes": None, "runaway_factor": 3, "digest": True})
        assert saved.status_code == 200, saved.text
        settings = httpx.get(f"{gw.base_url}/v1/alerts", headers=key_auth).json()["settings"]
        assert settings["thresholds"] == [50, 90] and settings["runaway_factor"] == 3 and settings["digest"] is True
        assert [c["kind"] for c in settings["channels"]] == ["webhook"]
        assert alice.put("/v1/alerts", json={"thresholds": [-5]}).status_code == 400

        # Bob sees none of alice's alerts; a developer's session gets no outbox.
        bob = sign_in(gw.base_url, bob_key)
        assert bob.get("/v1/alerts").json()["events"] == []
        assert bob.get("/admin/alerts").status_code == 403
        assert httpx.get(f"{gw.base_url}/admin/alerts", headers={"authorization": f"Bearer {bob_key}"}).status_code == 401

        # The operator's session: the delivery that keeps failing is there, with its error.
        operator = sign_in(gw.base_url, gw.admin_key)
        status = wait_for(lambda: (s := operator.get("/admin/alerts").json())["counts"]["failed"] and s,
                          what="the delivery to fail for good")
        assert status["counts"] == {"pending": 0, "sent": 0, "failed": 1}
        failed = status["open"][0]
        assert failed["state"] == "failed" and failed["attempts"] == 2 and failed["channel"] == "dead" and failed["last_error"]
        assert operator.get("/v1/alerts").status_code == 400  # the operator has no alerts of their own


def test_team_digest_for_the_operator_equals_the_ledger(tmp_path: Path, upstream: FakeUpstream) -> None:
    clock = ManualClock(START + WEEK + 3600)
    toml = catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 1000")
    with Gateway(tmp_path, toml, clock=clock) as gw:
        gw.create_user("bob", "pro")
        alice, bob = gw.state.db.get_user("alice"), gw.state.db.get_user("bob")
        rows = seed(alice.id, bob.id)
        gw.state.db.insert_ledger(rows)
        team = sign_in(gw.base_url, gw.admin_key).get("/v1/insights")
        own = sign_in(gw.base_url, gw.key).get("/v1/insights")
    assert team.status_code == 200 and own.status_code == 200, (team.text, own.text)
    week = [r for r in rows if START <= r["ts"] < START + WEEK]
    served = [r for r in week if r["status"] != "refused"]
    figures = team.json()["figures"]
    assert team.json()["user"] == "the team" and figures["week_start"] == START
    assert figures["this_week"]["requests"] == len(served)
    assert figures["limit_hits"]["total"] == len(week) - len(served)
    assert figures["this_week"]["tokens"] == sum(r["input_tokens"] + r["output_tokens"] for r in served)
    mine = own.json()["figures"]["this_week"]["requests"]
    assert mine == len([r for r in served if r["user_id"] == alice.id]) < len(served)
