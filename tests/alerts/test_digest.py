"""The weekly digest for a seeded week of ledger rows, with an injected clock: sent once, on
Monday after the digest hour, to the subscriber who opted in and to the operator, with figures
equal to those computed here independently from the same rows."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from oneplan.metering.ledger import LEDGER_DEFAULTS
from tests.alerts.receivers import HttpReceiver, wait_for
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway, ManualClock
from tests.support.process import oneplan_cli

WEEK = 7 * 86400
START = datetime(2026, 11, 16, tzinfo=UTC).timestamp()  # a Monday: the week digested
MONDAY_AFTER = START + WEEK


def seed(user_id: int, other_id: int) -> list[dict[str, Any]]:
    rng = random.Random(14)
    rows = []
    for i in range(600):
        ts = START - WEEK + rng.uniform(0, 2 * WEEK)
        status = rng.choices(["ok", "failed", "cancelled", "refused"], [80, 5, 5, 10])[0]
        model = rng.choices(["m1", "m2"], [75, 25])[0]
        refused = status == "refused"
        inp = 0 if refused else rng.randint(100, 5000)
        rows.append({
            **LEDGER_DEFAULTS,
            "id": f"seed-{i}", "ts": ts, "user_id": user_id if i % 5 else other_id, "key_id": "key_seed",
            "protocol": "openai_chat", "model": model, "stream": False, "status": status,
            "http_status": 429 if refused else 200,
            "error_class": f"QuotaExceeded:{rng.choice(['5h', 'week'])}" if refused else None,
            "weight": 0 if refused else 1, "input_tokens": inp, "cached_tokens": 0 if refused else rng.randint(0, inp),
            "output_tokens": 0 if refused else rng.randint(10, 800), "cost": 0.0 if refused else rng.uniform(0, 0.01),
            "latency_ms": rng.uniform(200, 3000),
            "ttft_ms": None if refused else (rng.uniform(100, 400) if model == "m2" else rng.uniform(400, 900)),
        })
    return rows


def expected(rows: list[dict[str, Any]], user_id: int) -> dict[str, Any]:
    """The digest's figures, computed here from the rows, independently of oneplan.alerts."""
    mine = [r for r in rows if r["user_id"] == user_id]
    week = [r for r in mine if START <= r["ts"] < START + WEEK]
    before = [r for r in mine if START - WEEK <= r["ts"] < START]
    served, last = [r for r in week if r["status"] != "refused"], [r for r in before if r["status"] != "refused"]
    refused = [r for r in week if r["status"] == "refused"]
    models = Counter(r["model"] for r in served)
    hours = Counter(datetime.fromtimestamp(r["ts"], UTC).hour for r in served)
    ttft = {m: statistics.median(r["ttft_ms"] for r in served if r["model"] == m and r["status"] == "ok") for m in models}
    return {
        "requests": (len(served), len(last)),
        "tokens": sum(r["input_tokens"] + r["output_tokens"] for r in served),
        "cost": sum(r["cost"] for r in served),
        "shares": {m: n / len(served) for m, n in models.items()},
        "hits": len(refused),
        "hit_windows": Counter(r["error_class"].split(":")[1] for r in refused),
        "cache": sum(r["cached_tokens"] for r in served) / sum(r["input_tokens"] for r in served),
        "busiest": sorted(hours.items(), key=lambda kv: (-kv[1], kv[0]))[:3],
        "slowest": max(ttft, key=lambda m: ttft[m]),
        "ttft": ttft,
    }


def check(figures: dict[str, Any], want: dict[str, Any]) -> None:
    assert (figures["this_week"]["requests"], figures["last_week"]["requests"]) == want["requests"]
    assert figures["this_week"]["tokens"] == want["tokens"]
    assert abs(figures["this_week"]["cost"] - want["cost"]) < 1e-5
    assert {m["model"]: m["share"] for m in figures["models"]} == {m: round(s, 4) for m, s in want["shares"].items()}
    assert figures["limit_hits"]["total"] == want["hits"]
    assert figures["limit_hits"]["by_window"] == dict(want["hit_windows"])
    assert abs(figures["cache_hit_share"] - want["cache"]) < 1e-4
    assert [(h["hour"], h["requests"]) for h in figures["busiest_hours"]] == want["busiest"]
    assert figures["slowest_model"]["model"] == want["slowest"]
    assert abs(figures["slowest_model"]["ttft_median_ms"] - want["ttft"][want["slowest"]]) < 0.1


def test_weekly_digest_equals_the_ledger_and_goes_out_once(tmp_path: Path, upstream: FakeUpstream) -> None:
    clock = ManualClock(MONDAY_AFTER + 8 * 3600)  # Monday 08:00: before the digest hour
    with HttpReceiver() as hook:
        extra = f"""
[models."m2"]
provider = "up"
upstream = "up-model-2"

[alerts]
poll_seconds = 0.02
operator_channels = ["ops"]

[alerts.channels.ops]
kind = "webhook"
url = "{hook.url}/ops"
"""
        toml = catalog_for(upstream, plan="[plans.pro]\nrequests_per_5h = 1000", extra=extra)
        with Gateway(tmp_path, toml, clock=clock) as gw:
            alice = gw.state.db.get_user("alice")
            bob_key = gw.create_user("bob", "pro")
            bob = gw.state.db.get_user("bob")
            rows = seed(alice.id, bob.id)
            gw.state.db.insert_ledger(rows)
            for key, path in ((gw.key, "alice"), (bob_key, None)):
                settings = {"digest": path is not None, "channels": [{"kind": "webhook", "url": f"{hook.url}/{path or 'bob'}"}]}
                assert httpx.put(f"{gw.base_url}/v1/alerts", json=settings,
                                 headers={"authorization": f"Bearer {key}"}).status_code == 200
            scheduler = gw.state.alerts.scheduler
            assert gw.run(scheduler.tick()) is True  # the only replica leads
            assert gw.state.alerts.outbox.events() == []  # not yet 09:00
            clock.advance(2 * 3600)
            gw.run(scheduler.tick())
            gw.run(scheduler.tick())  # a second tick sends nothing again
            wait_for(lambda: len(hook.delivered()) == 2, what="the user's and the operator's digests")
            wait_for(lambda: gw.state.alerts.outbox.status()["counts"]["pending"] == 0)
            clock.advance(3600)
            gw.run(scheduler.tick())
            events = gw.state.alerts.outbox.events()
            preview = httpx.get(f"{gw.base_url}/v1/insights", headers={"authorization": f"Bearer {gw.key}"}).json()
    assert sorted(e["key"] for e in events) == [f"digest|operator|{START:.0f}|1", f"digest|user:{alice.id}|{START:.0f}|1"]
    assert sorted(r.path for r in hook.requests) == ["/alice", "/ops"]  # bob did not opt in
    mine = next(r.json for r in hook.requests if r.path == "/alice")
    assert mine["event"] == "digest.weekly" and mine["user"] == "alice"
    want = expected(rows, alice.id)
    check(mine["figures"], want)
    check(preview["figures"], want)
    assert "m1" in mine["text"] and mine["html"].startswith("<html>")
    # m2 answered faster and is in the plan: the first suggestion says so, with the figures.
    share = 100 * want["shares"]["m1"]
    assert mine["figures"]["suggestions"][0].startswith(f"{share:.0f} % of your requests went to m1; your plan also includes m2")
    assert any("You hit the" in s for s in mine["figures"]["suggestions"])
    everyone = next(r.json for r in hook.requests if r.path == "/ops")
    assert everyone["figures"]["this_week"]["requests"] == sum(
        1 for r in rows if START <= r["ts"] < START + WEEK and r["status"] != "refused"
    )

    config = tmp_path / "oneplan.toml"
    config.write_text(toml)
    env = {"ONEPLAN_CONFIG": str(config), "ONEPLAN_HOME": str(gw.data_dir)}
    done = oneplan_cli("insights", "preview", "--user", "alice", "--week-of", "2026-11-18", "--json", env=env)
    assert done.returncode == 0, done.stderr
    check(orjson.loads(done.stdout)["figures"], want)
    text = oneplan_cli("insights", "preview", "--user", "alice", "--week-of", "2026-11-18", env=env)
    assert text.stdout.startswith("oneplan weekly insights for alice, week of 2026-11-16")
    assert f"Requests: {want['requests'][0]} (last week {want['requests'][1]}" in text.stdout
    status = oneplan_cli("alerts", "status", env=env)
    assert status.stdout.startswith("deliveries: 0 pending, 0 failed, 2 sent")
