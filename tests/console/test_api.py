"""The console's JSON endpoints against a real gateway: auth, sessions, CSRF, tenant isolation,
and figures that equal the ledger's."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from oneplan.console import pages
from oneplan.metering import rollup
from oneplan.metering.report import usage_report
from oneplan.metering.windows import Periods
from tests.conftest import catalog_for
from tests.console.support import ledger_rows_clean, ledger_sums, rollup_sums, sign_in, statuses
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

PLANS = """
[plans.pro]
requests_per_5h = 100
requests_per_week = 1000

[plans.max]
requests_per_5h = 500
tokens_per_month = 1000000
"""
ADMIN_GETS = ["/admin/overview", "/admin/series", "/admin/breakdown", "/admin/errors", "/admin/health",
              "/admin/ledger", "/admin/ledger.csv", "/admin/users", "/admin/keys", "/admin/usage", "/admin/providers"]
ROUTING = """
[routing]
retries = 0
circuit_failures = 1000
"""
UPLOT_SHA256 = "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    with FakeUpstream(dialect="openai") as up, Gateway(tmp_path, catalog_for(up, plan=PLANS, extra=ROUTING)) as gateway:
        gateway.up = up  # type: ignore[attr-defined]
        yield gateway


def chat(gw: Gateway, key: str, n: int, *, stream: bool = False) -> None:
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0)
    for i in range(n):
        try:
            if stream:
                list(client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}], stream=True))
            else:
                client.chat.completions.create(model="m1", messages=[{"role": "user", "content": f"q{i}"}])
        except openai.APIError:
            pass


def test_rollup_equals_ledger_after_requests_with_failures(gw: Gateway) -> None:
    bob = gw.create_user("bob", "max")
    chat(gw, gw.key, 6)
    gw.up.fault("500", rate=0.4, seed=3)  # type: ignore[attr-defined]
    chat(gw, gw.key, 10, stream=True)
    chat(gw, bob, 8)
    gw.ledger()
    engine = gw.state.db.engine
    assert statuses(engine)["failed"] > 0 and statuses(engine)["ok"] > 0
    assert rollup_sums(engine) == ledger_sums(engine)
    # Replaying rows the ledger holds (a journal replayed twice) changes nothing.
    gw.state.db.insert_ledger(ledger_rows_clean(gw.state.db))
    assert rollup_sums(engine) == ledger_sums(engine)
    # A rebuild from the ledger gives the same roll-up, histograms included.
    before = {table: _table(engine, table) for table in rollup.TABLES}
    with engine.begin() as conn:
        rollup.rebuild(conn)
    for table in rollup.TABLES:
        after = _table(engine, table)
        assert len(after) == len(before[table]) > 0
        for old, new in zip(before[table], after, strict=True):
            assert old == pytest.approx(new), table


def _table(engine: Any, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table}"))


def test_developer_figures_equal_the_ledger_and_stay_their_own(gw: Gateway) -> None:
    bob = gw.create_user("bob", "max")
    chat(gw, gw.key, 5)
    chat(gw, bob, 3)
    gw.ledger()
    me = httpx.get(f"{gw.base_url}/v1/me", headers={"authorization": f"Bearer {gw.key}"}).json()
    assert me["user"] == "alice" and me["plan"]["name"] == "pro"
    report = usage_report(gw.state.db, gw.catalog, Periods(), gw.clock, "alice")["users"][0]
    by_window = {w["window"]: w for w in me["windows"]}
    for w in report["windows"]:
        assert by_window[w["window"]]["used"] == w["used"] and by_window[w["window"]]["limit"] == w["limit"]
        assert by_window[w["window"]]["resets_at"] == pytest.approx(w["resets_at"])
    models = httpx.get(f"{gw.base_url}/v1/me/models?days=90", headers={"authorization": f"Bearer {gw.key}"}).json()["data"]
    assert [(m["model"], m["requests"], m["input_tokens"], m["output_tokens"]) for m in models] == [
        (r["model"], r["requests"], r["input_tokens"], r["output_tokens"]) for r in report["models"]
    ]
    assert models[0]["cost"] == pytest.approx(report["models"][0]["cost"])
    assert models[0]["p50_latency_ms"] is not None
    recent = httpx.get(f"{gw.base_url}/v1/me/requests", headers={"authorization": f"Bearer {gw.key}"}).json()["data"]
    assert len(recent) == 5 and all("prompt" not in r and "completion" not in r for r in recent)
    series = httpx.get(f"{gw.base_url}/v1/me/series?range=7d&tz=Asia/Shanghai", headers={"authorization": f"Bearer {gw.key}"}).json()
    assert len(series["starts"]) in (168, 169) and sum(series["series"][0]["requests"]) == 5
    daily = httpx.get(f"{gw.base_url}/v1/me/series?range=90d&tz=Europe/Paris", headers={"authorization": f"Bearer {bob}"}).json()
    assert sum(daily["series"][0]["requests"]) == 3 and 90 <= len(daily["starts"]) <= 91


def test_keys_created_listed_and_revoked_by_their_owner_only(gw: Gateway) -> None:
    bob = gw.create_user("bob", "pro")
    auth = {"authorization": f"Bearer {gw.key}"}
    created = httpx.post(f"{gw.base_url}/v1/me/keys", json={"name": "laptop"}, headers=auth)
    assert created.status_code == 201
    new = created.json()
    chat(gw, new["key"], 1)
    listed = httpx.get(f"{gw.base_url}/v1/me/keys", headers=auth).json()["data"]
    assert {k["name"] for k in listed} == {None, "laptop"} and all("hash" not in k for k in listed)
    assert all(k["user"] == "alice" for k in listed)
    refused = httpx.delete(f"{gw.base_url}/v1/me/keys/{new['key_id']}", headers={"authorization": f"Bearer {bob}"})
    assert refused.status_code == 404
    assert httpx.get(f"{gw.base_url}/v1/me/keys", headers={"authorization": f"Bearer {bob}"}).json()["data"][0]["user"] == "bob"
    assert httpx.delete(f"{gw.base_url}/v1/me/keys/{new['key_id']}", headers=auth).status_code == 200
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=new["key"], max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])


def test_admin_endpoints_refuse_developers(gw: Gateway) -> None:
    session = sign_in(gw.base_url, gw.key)
    for path in ADMIN_GETS:
        assert httpx.get(f"{gw.base_url}{path}", headers={"authorization": f"Bearer {gw.key}"}).status_code in (401, 403), path
        assert session.get(path).status_code == 403, path
    assert session.patch("/admin/users/alice", json={"plan": "max"}).status_code == 403
    assert session.post("/admin/users", json={"name": "eve", "plan": "max"}).status_code == 403
    assert session.get("/console/admin").status_code == 403
    admin = {"authorization": f"Bearer {gw.admin_key}"}
    for path in ADMIN_GETS:
        assert httpx.get(f"{gw.base_url}{path}", headers=admin).status_code == 200, path


def test_operator_session_manages_users_and_explores_the_ledger(gw: Gateway) -> None:
    chat(gw, gw.key, 7)
    gw.up.fault("500", times=2)  # type: ignore[attr-defined]
    chat(gw, gw.key, 2)
    admin = sign_in(gw.base_url, gw.admin_key)
    assert admin.get("/console").status_code == 200 and 'data-page="admin"' in admin.get("/console").text
    created = admin.post("/admin/users", json={"name": "carol", "plan": "pro"})
    assert created.status_code == 201, created.text
    assert admin.patch("/admin/users/alice", json={"plan": "max"}).json()["plan"] == "max"
    me = httpx.get(f"{gw.base_url}/v1/me", headers={"authorization": f"Bearer {gw.key}"}).json()
    assert me["plan"]["name"] == "max" and {w["window"] for w in me["windows"]} == {"5h", "tokens_month"}
    assert admin.patch("/admin/users/carol", json={"disabled": True}).json()["disabled"] is True
    carol = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=created.json()["key"], max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        carol.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    overview = admin.get("/admin/overview").json()
    alice = next(u for u in overview["users"] if u["name"] == "alice")
    assert alice["last_request_at"] is not None and alice["windows"][0]["percent"] > 0
    errors = admin.get("/admin/errors").json()["data"]
    assert sum(e["requests"] for e in errors if e["status"] == "failed") == 2
    pages_seen, after = [], None
    while True:
        page = admin.get("/admin/ledger", params={"limit": 4, **({"after": after} if after else {})}).json()
        pages_seen.extend(page["data"])
        after = page["next"]
        if after is None:
            break
    assert len(pages_seen) == 9 and len({r["id"] for r in pages_seen}) == 9
    assert [r["ts"] for r in pages_seen] == sorted((r["ts"] for r in pages_seen), reverse=True)
    failed = admin.get("/admin/ledger", params={"status": "failed", "user": "alice"}).json()["data"]
    assert len(failed) == 2 and all(r["user"] == "alice" for r in failed)
    csv = admin.get("/admin/ledger.csv", params={"status": "ok"})
    assert csv.headers["content-type"].startswith("text/csv") and len(csv.text.strip().splitlines()) == 8
    assert "prompt" not in csv.text.splitlines()[0]
    health = admin.get("/admin/health").json()
    assert health["deployments"][0]["provider"] == "up" and health["deployments"][0]["last_hour_requests"] >= 7


def test_sessions_cookies_csrf_and_sign_out(gw: Gateway) -> None:
    client = httpx.Client(base_url=gw.base_url, follow_redirects=False)
    assert client.get("/console").headers["location"] == "/console/sign-in"
    session = sign_in(gw.base_url, gw.key)
    cookie = next(c for c in session.cookies.jar if c.name == "oneplan_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite") == "strict"
    assert gw.key not in cookie.value
    # The database keeps only a hash of the session token.
    with gw.state.db.engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT hash FROM sessions")]
    assert stored == [hashlib.sha256(cookie.value.encode()).hexdigest()]
    page = session.get("/console")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and gw.key not in page.text
    # A forged cross-site call: the cookie rides along, the CSRF token cannot.
    forged = httpx.post(f"{gw.base_url}/v1/me/keys", json={}, cookies={"oneplan_session": cookie.value},
                        headers={"origin": "http://evil.example"})
    assert forged.status_code == 403
    wrong_origin = session.post("/v1/me/keys", json={}, headers={"origin": "http://evil.example"})
    assert wrong_origin.status_code == 403
    assert session.post("/v1/me/keys", json={"name": "ok"}).status_code == 201
    assert session.post("/console/sign-out", data={"csrf": "wrong"}).status_code == 403
    out = session.post("/console/sign-out", data={"csrf": session.headers["x-csrf-token"]})
    assert out.status_code == 303
    assert httpx.get(f"{gw.base_url}/v1/me", cookies={"oneplan_session": cookie.value}).status_code == 401


def test_sign_in_is_rate_limited(gw: Gateway) -> None:
    client = httpx.Client(base_url=gw.base_url, follow_redirects=False)
    codes = []
    for _ in range(12):
        form = client.get("/console/sign-in")
        nonce = form.text.split('name="nonce" value="')[1].split('"')[0]
        codes.append(client.post("/console/sign-in", data={"key": "sk-op-wrong", "nonce": nonce}).status_code)
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_vendored_chart_library_is_the_recorded_release() -> None:
    digest = hashlib.sha256((pages.HERE / "static" / "uPlot.iife.min.js").read_bytes()).hexdigest()
    assert digest == UPLOT_SHA256  # uPlot 1.6.32 from npm (static/uPlot.LICENSE: MIT)
    assert (pages.HERE / "static" / "uPlot.LICENSE").read_text().startswith("The MIT License")


def test_self_service_endpoints_need_a_developer(gw: Gateway) -> None:
    assert httpx.get(f"{gw.base_url}/v1/me").status_code == 401
    assert httpx.get(f"{gw.base_url}/v1/me", headers={"authorization": "Bearer sk-op-nope"}).status_code == 401
    assert httpx.get(f"{gw.base_url}/v1/me", cookies={"oneplan_session": "forged"}).status_code == 401
    assert httpx.get(f"{gw.base_url}/v1/me", headers={"authorization": f"Bearer {gw.admin_key}"}).status_code == 400
    bad = httpx.get(f"{gw.base_url}/v1/me/series?range=1y", headers={"authorization": f"Bearer {gw.key}"})
    assert bad.status_code == 400 and "range" in bad.json()["error"]["message"]
