"""Plans and quotas through the real gateway: atomic admission under concurrency, refusals
with the window and Retry-After, headers, weights, roll-over with an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway, ManualClock

T0 = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()


def test_200_concurrent_requests_against_50_remaining_admit_exactly_50(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = "[plans.pro]\nrequests_per_5h = 60\nrequests_per_week = 1000"
    with Gateway(tmp_path, catalog_for(upstream, plan=plan)) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        for _ in range(10):  # 10 used, 50 remaining
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(timeout=60, limits=limits) as http:
                async def one(i: int) -> int:
                    body = {"model": "m1", "messages": [{"role": "user", "content": f"q{i}"}], "stream": i % 2 == 0}
                    r = await http.post(f"{gw.base_url}/v1/chat/completions", json=body,
                                        headers={"authorization": f"Bearer {gw.key}"})
                    return r.status_code
                return await asyncio.gather(*(one(i) for i in range(200)))

        statuses = asyncio.run(burst())
        assert statuses.count(200) == 50
        assert statuses.count(429) == 150
        assert len(upstream.requests) == 60  # refused requests never reached the upstream
        rows = gw.ledger()
        assert sum(1 for r in rows if r["status"] == "ok") == 60
        assert sum(1 for r in rows if r["status"] == "refused") == 150


def test_refusal_names_the_window_and_when_it_frees_up(tmp_path: Path, upstream: FakeUpstream) -> None:
    clock = ManualClock(T0)
    plan = "[plans.pro]\nrequests_per_5h = 2\nrequests_per_week = 3"
    with Gateway(tmp_path, catalog_for(upstream, plan=plan), clock=clock) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        first = client.chat.completions.with_raw_response.create(model="m1", messages=[{"role": "user", "content": "x"}])
        assert first.headers["x-oneplan-quota-5h-remaining"] == "1"
        assert first.headers["x-oneplan-quota-week-remaining"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        clock.advance(600)
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        body = refused.value.body
        assert body["type"] == "insufficient_quota" and body["code"] == "insufficient_quota"
        assert "5-hour request quota" in body["message"] and "2026-11-18 17:00:00 UTC" in body["message"]
        assert refused.value.response.headers["retry-after"] == str(5 * 3600 - 600)
        # Five hours after the first request, one slot frees up - and the week is what binds next.
        clock.advance(5 * 3600 - 600)
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        assert "weekly request quota" in refused.value.body["message"]
        monday = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
        assert int(refused.value.response.headers["retry-after"]) == pytest.approx(monday - clock.now, abs=1)
        clock.now = monday
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])


def test_model_weights_and_plan_model_lists(tmp_path: Path, upstream: FakeUpstream) -> None:
    plan = '[plans.pro]\nrequests_per_5h = 5\nmodels = ["m1", "big"]\n[plans.lite]\nrequests_per_5h = 5\nmodels = ["m1"]'
    extra = '[models."big"]\nprovider = "up"\nweight = 3'
    with Gateway(tmp_path, catalog_for(upstream, plan=plan, extra=extra)) as gw:
        client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.key, max_retries=0)
        r = client.chat.completions.with_raw_response.create(model="big", messages=[{"role": "user", "content": "x"}])
        assert r.headers["x-oneplan-quota-5h-remaining"] == "2"
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="big", messages=[{"role": "user", "content": "x"}])
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
        assert sorted(m.id for m in client.models.list()) == ["big", "m1"]
        lite = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=gw.create_user("bob", "lite"), max_retries=0)
        assert [m.id for m in lite.models.list()] == ["m1"]
        with pytest.raises(openai.PermissionDeniedError):
            lite.chat.completions.create(model="big", messages=[{"role": "user", "content": "x"}])


def test_users_see_only_their_own_usage(tmp_path: Path, upstream: FakeUpstream) -> None:
    with Gateway(tmp_path, catalog_for(upstream)) as gw:
        bob = gw.create_user("bob", "pro")
        openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=bob, max_retries=0).chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "x"}]
        )
        mine = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {gw.key}"}).json()
        assert [u["user"] for u in mine["users"]] == ["alice"]
        assert mine["users"][0]["totals"]["requests"] == 0
        theirs = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {bob}"}).json()
        assert theirs["users"][0]["totals"]["requests"] == 1
        everyone = httpx.get(f"{gw.base_url}/admin/usage", headers={"authorization": f"Bearer {gw.admin_key}"}).json()
        assert {u["user"] for u in everyone["users"]} == {"alice", "bob"}
