"""Plans created and changed at run time: the admin API (validation naming the field, the admin
key only), users' plan and subscription time, the refresh that keeps the last plans through a
database failure (logged once), and the ``oneplan plans`` commands. Real gateway, real SQLite,
the fake upstream on loopback. Two replicas: tests/test_plans_replicas.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from oneplan.config import CatalogFile
from oneplan.routing.catalog import build
from oneplan.routing.plan_book import PlanBook
from oneplan.server.plan_sync import PlanSync
from oneplan.store.db import Database
from tests.conftest import catalog_for
from tests.fakes import FakeUpstream
from tests.support.gateway import Gateway

PLANS = "[plans.pro]\nrequests_per_5h = 1000\n\n[plans.max]\nrequests_per_5h = 5000\nrequests_per_week = 9000"


@pytest.fixture
def gw(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Gateway]:
    toml = catalog_for(upstream, plan=PLANS)
    config = tmp_path / "oneplan.toml"
    config.write_text(toml)
    # The catalog's source is a real file, as under `oneplan serve`: its specs read back.
    with Gateway(tmp_path, toml, source=str(config)) as gateway:
        yield gateway


def admin(gw: Gateway) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"authorization": f"Bearer {gw.admin_key}"}, timeout=30)


def chat(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
        json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]},
    )


def error(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text
    return reply.json()["error"]


def test_plans_are_managed_through_the_admin_api_and_enforced_at_once(gw: Gateway) -> None:
    api = admin(gw)
    listed = {p["name"]: p for p in api.get("/admin/plans").json()["data"]}
    assert listed["pro"] == {
        "name": "pro", "source": "catalog", "spec": {"requests_per_5h": 1000}, "overrides_catalog": False,
        "updated_at": None, "users": 1,
    }
    assert listed["max"]["spec"] == {"requests_per_5h": 5000, "requests_per_week": 9000}

    created = api.post("/admin/plans", json={"name": "lite", "spec": {"requests_per_5h": 3, "models": ["m1"]}})
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "runtime" and created.json()["spec"]["requests_per_5h"] == 3
    assert gw.state.catalog.plans["lite"].requests_per_5h == 3  # in force on this replica at once
    assert "already" not in error(api.post("/admin/plans", json={"name": "lite", "spec": {}}), 409)["message"]
    assert error(api.post("/admin/plans", json={"name": "pro", "spec": {}}), 409)["param"] == "name"

    # A user moved mid-window keeps what they used: 2 requests on pro, then lite allows 3.
    assert [chat(gw, gw.key).status_code for _ in range(2)] == [200, 200]
    moved = api.patch("/admin/users/alice", json={"plan": "lite"})
    assert moved.status_code == 200 and moved.json()["plan"] == "lite"
    assert [chat(gw, gw.key).status_code for _ in range(2)] == [200, 429]

    # PUT replaces the spec, PATCH merges into it (null removes a key).
    put = api.put("/admin/plans/lite", json={"spec": {"requests_per_5h": 4, "requests_per_week": 50}})
    assert put.status_code == 200 and put.json()["spec"] == {"requests_per_5h": 4, "requests_per_week": 50}
    assert chat(gw, gw.key).status_code == 200 and chat(gw, gw.key).status_code == 429
    patched = api.patch("/admin/plans/lite", json={"spec": {"requests_per_week": None, "requests_per_5h": 6}})
    assert patched.json()["spec"] == {"requests_per_5h": 6}
    assert api.get("/admin/plans/lite").json()["users"] == 1

    # A catalog plan changed at run time is overridden; deleting the override brings it back.
    over = api.patch("/admin/plans/max", json={"spec": {"requests_per_week": 10}})
    assert over.json() | {"updated_at": None} == {
        "name": "max", "source": "runtime", "spec": {"requests_per_5h": 5000, "requests_per_week": 10},
        "overrides_catalog": True, "updated_at": None, "users": 0,
    }
    assert gw.state.catalog.plans["max"].requests_per_week == 10
    assert api.delete("/admin/plans/max").json() == {"deleted": "max", "in_force": "catalog"}
    assert gw.state.catalog.plans["max"].requests_per_week == 9000
    assert "declared in" in error(api.delete("/admin/plans/max"), 409)["message"]  # catalog only now

    # A run-time plan with users on it and nothing to fall back to is not deleted.
    assert "1 user is on plan 'lite'" in error(api.delete("/admin/plans/lite"), 409)["message"]
    assert api.patch("/admin/users/alice", json={"plan": "pro"}).status_code == 200
    assert api.delete("/admin/plans/lite").status_code == 200
    assert "lite" not in gw.state.catalog.plans
    assert error(api.get("/admin/plans/lite"), 404)["type"] == "not_found_error"
    assert error(api.patch("/admin/plans/lite", json={"spec": {}}), 404)


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"name": "x", "spec": {"requests_per_5h": "many"}}, "spec.requests_per_5h", "valid integer"),
        ({"name": "x", "spec": {"requests_per_5h": -1}}, "spec.requests_per_5h", "greater than or equal"),
        ({"name": "x", "spec": {"requests_per_5hh": 1}}, "spec.requests_per_5hh", "unknown key"),
        ({"name": "x", "spec": {"windows": [{"unit": "apples", "kind": "rolling", "length": "5h", "limit": 1}]}},
         "spec.windows[0].unit", None),
        ({"name": "x", "spec": {"windows": [{"unit": "requests", "kind": "rolling", "length": "5 parsecs", "limit": 1}]}},
         "spec.windows[0]", "a rolling length is a number"),
        ({"name": "x", "spec": [1]}, "spec", "object"),
        ({"name": "x"}, "spec", "required"),
        ({"spec": {}}, "name", "required"),
        ({"name": "", "spec": {}}, "name", None),
        ({"name": "a\nb", "spec": {}}, "name", None),
    ],
)
def test_a_spec_the_engine_refuses_is_a_400_naming_the_field(gw: Gateway, body: dict, param: str, needle: str | None) -> None:
    err = error(admin(gw).post("/admin/plans", json=body), 400)
    assert err["param"] == param, err
    assert err["message"].startswith(err["param"] + ":"), err
    if needle:
        assert needle in err["message"], err
    assert "x" not in gw.state.catalog.plans


def test_a_bad_change_stores_nothing(gw: Gateway) -> None:
    api = admin(gw)
    assert api.post("/admin/plans", json={"name": "lite", "spec": {"requests_per_5h": 3}}).status_code == 201
    assert error(api.patch("/admin/plans/lite", json={"spec": {"concurrency": 0}}), 400)["param"] == "spec.concurrency"
    assert error(api.put("/admin/plans/lite", json={"spec": {"timezone": "Mars/Olympus"}}), 400)["param"] == "spec.timezone"
    assert error(api.put("/admin/plans/lite", json={"spec": "x"}), 400)["param"] == "spec"
    assert api.get("/admin/plans/lite").json()["spec"] == {"requests_per_5h": 3}
    assert gw.state.db.get_plan("lite").spec == {"requests_per_5h": 3}


def test_the_plan_endpoints_are_for_the_admin_key_only(gw: Gateway) -> None:
    calls = [
        ("GET", "/admin/plans", None), ("GET", "/admin/plans/pro", None),
        ("POST", "/admin/plans", {"name": "free", "spec": {"requests_per_5h": 1000000}}),
        ("PUT", "/admin/plans/pro", {"spec": {"requests_per_5h": 1000000}}),
        ("PATCH", "/admin/plans/pro", {"spec": {"requests_per_5h": 1000000}}),
        ("DELETE", "/admin/plans/pro", None),
        ("PATCH", "/admin/users/alice", {"plan": "max"}), ("GET", "/admin/users/alice", None),
    ]
    for method, path, body in calls:
        for headers in ({}, {"authorization": f"Bearer {gw.key}"}, {"authorization": "Bearer sk-op-admin-guess"}):
            reply = httpx.request(method, gw.base_url + path, json=body, headers=headers, timeout=30)
            assert reply.status_code in (401, 403), (method, path, headers, reply.status_code)
            assert reply.json()["error"]["type"] in ("authentication_error", "permission_error")
    assert set(gw.state.catalog.plans) == {"pro", "max"} and gw.state.db.list_plans() == []
    assert gw.state.db.get_user("alice").plan == "pro"


def test_users_plan_and_subscription_time_through_the_admin_api(gw: Gateway) -> None:
    api = admin(gw)
    made = api.post("/admin/users", json={"name": "bob", "plan": "max", "subscribed_at": "2026-01-31"})
    assert made.status_code == 201, made.text
    jan31 = datetime(2026, 1, 31, tzinfo=UTC).timestamp()  # no offset: server.quota_timezone (UTC)
    assert made.json()["subscribed_at"] == jan31
    bob = made.json()["key"]
    record = gw.run(gw.state.keys.authenticate(bob, gw.clock()))
    assert record.subscribed_at == jan31 and record.plan == "max"

    # Unix seconds, an offset, and null (back to the creation time); the key cache follows.
    changed = api.patch("/admin/users/bob", json={"subscribed_at": "2026-02-28T09:00:00+08:00"})
    assert changed.json()["subscribed_at"] == datetime(2026, 2, 28, 1, tzinfo=UTC).timestamp()
    assert api.patch("/admin/users/bob", json={"subscribed_at": 1767225600}).json()["subscribed_at"] == 1767225600
    assert gw.run(gw.state.keys.authenticate(bob, gw.clock())).subscribed_at == 1767225600
    reset = api.patch("/admin/users/bob", json={"subscribed_at": None}).json()
    assert reset["subscribed_at"] == reset["created_at"] == api.get("/admin/users/bob").json()["created_at"]
    alice = gw.run(gw.state.keys.authenticate(gw.key, gw.clock()))
    assert alice.subscribed_at == gw.state.db.get_user("alice").created_at  # NULL: from creation

    for body, param in [
        ({"subscribed_at": "last tuesday"}, "subscribed_at"),
        ({"subscribed_at": True}, "subscribed_at"),
        ({"subscribed_at": -5}, "subscribed_at"),
        ({"plan": "platinum"}, "plan"),
        ({"plan": None}, "plan"),
        ({"disabled": "yes"}, "disabled"),
    ]:
        assert error(api.patch("/admin/users/bob", json=body), 400)["param"] == param, body
    assert error(api.post("/admin/users", json={"name": "eve", "plan": "max", "subscribed_at": "soon"}), 400)["param"] == "subscribed_at"
    assert error(api.patch("/admin/users/nobody", json={"plan": "max"}), 404)
    assert error(api.patch("/admin/users/bob", json={}), 400)["message"].startswith("Send")
    # The console's PATCH (plan, disabled) still works through this one.
    assert api.patch("/admin/users/bob", json={"disabled": True}).json()["disabled"] is True
    assert error(chat(gw, bob), 401)["message"] == "This user is disabled."
    listed = {u["name"]: u for u in api.get("/admin/users").json()["data"]}
    assert listed["bob"]["disabled"] is True and "subscribed_at" in listed["alice"]


def test_a_user_can_be_put_on_a_plan_another_replica_just_created(gw: Gateway, tmp_path: Path) -> None:
    """Written straight to the database (as another replica or the CLI does): this replica has
    not polled yet, and still finds it when a user is moved to it."""
    other = Database.open(gw.data_dir, gw.catalog.server.database_url)
    other.upsert_plan("team", {"requests_per_5h": 1})
    other.close()
    moved = admin(gw).patch("/admin/users/alice", json={"plan": "team"})
    assert moved.status_code == 200, moved.text
    assert chat(gw, gw.key).status_code == 200 and chat(gw, gw.key).status_code == 429


def test_a_window_the_new_plan_adds_counts_what_the_user_already_used(gw: Gateway) -> None:
    api = admin(gw)
    assert [chat(gw, gw.key).status_code for _ in range(3)] == [200] * 3
    assert api.post("/admin/plans", json={"name": "weekly", "spec": {"requests_per_week": 4}}).status_code == 201
    assert api.patch("/admin/users/alice", json={"plan": "weekly"}).status_code == 200
    assert [chat(gw, gw.key).status_code for _ in range(2)] == [200, 429]


# -- the refresh -------------------------------------------------------------------------------


def test_the_refresh_keeps_the_last_plans_while_the_database_fails_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = build(CatalogFile.model_validate(tomllib.loads("[plans.pro]\nrequests_per_5h = 10")), "t.toml")
    db = Database.open(tmp_path)
    writer = Database.open(tmp_path)
    sync = PlanSync(db, PlanBook(catalog), refresh_seconds=3600)  # driven by hand: no poll races

    async def run() -> None:
        await sync.sync()
        writer.upsert_plan("lite", {"requests_per_5h": 2})
        await sync.sync()
        assert catalog.plans["lite"].requests_per_5h == 2
        before = catalog.plans
        # The database stops answering this reader: its plans table is gone (a real SQL error).
        with writer.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE plans RENAME TO plans_away")
            writer._bump(conn, "plans_version")
        with caplog.at_level(logging.INFO, logger="oneplan.plans"):
            for _ in range(5):
                await sync.sync()
            assert catalog.plans is before and catalog.plans["lite"].requests_per_5h == 2
            failed = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(failed) == 1 and "keeping the 2 plans in memory" in failed[0].getMessage()
            with writer.engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE plans_away RENAME TO plans")
            writer.upsert_plan("lite", {"requests_per_5h": 7})
            await sync.sync()
            assert catalog.plans["lite"].requests_per_5h == 7
            assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == ["run-time plans readable again"]
        # No change, no read: one cheap query per poll.
        refreshes = sync.refreshes
        await sync.sync()
        assert sync.refreshes == refreshes

    asyncio.run(run())
    db.close()
    writer.close()


def test_a_stored_spec_the_engine_refuses_keeps_its_last_good_definition(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    catalog = build(CatalogFile.model_validate(tomllib.loads("[plans.pro]\nrequests_per_5h = 10")), "t.toml")
    book = PlanBook(catalog)
    db = Database.open(tmp_path)
    db.upsert_plan("lite", {"requests_per_5h": 2})
    db.upsert_plan("pro", {"requests_per_5h": 20})
    book.apply(db.list_plans())
    # Written by another version of oneplan, say: a key this one does not know.
    db.upsert_plan("lite", {"requests_per_5h": 2, "from_the_future": True})
    db.upsert_plan("pro", {"requests_per_5h": "lots"})
    db.upsert_plan("new", {"nonsense": 1})
    with caplog.at_level(logging.WARNING, logger="oneplan.plans"):
        book.apply(db.list_plans())
        book.apply(db.list_plans())
    assert catalog.plans["lite"].requests_per_5h == 2 and catalog.plans["pro"].requests_per_5h == 20
    assert "new" not in catalog.plans
    assert len(caplog.records) == 3  # once per plan, not once per refresh
    assert "spec.from_the_future" in book.entry("lite")["error"]
    db.close()


# -- the CLI -----------------------------------------------------------------------------------


def oneplan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oneplan.cli.main", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
    )


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "oneplan.toml").write_text(
        '[providers.fake]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n\n'
        '[models."m1"]\nprovider = "fake"\n\n[plans.pro]\nrequests_per_5h = 10\n'
    )
    return {"ONEPLAN_HOME": str(tmp_path / "data"), "ONEPLAN_CONFIG": str(tmp_path / "oneplan.toml")}


def test_the_plans_commands_work_on_the_database(home: dict[str, str], tmp_path: Path) -> None:
    def ok(*args: str) -> subprocess.CompletedProcess[str]:
        done = oneplan(*args, env=home)
        assert done.returncode == 0, (args, done.stderr)
        return done

    def fails(*args: str) -> str:
        done = oneplan(*args, env=home)
        assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
        return done.stderr

    ok("plans", "create", "lite", "--spec", '{"requests_per_5h": 2}')
    (tmp_path / "team.toml").write_text('requests_per_5h = 50\nmodels = ["m1"]\n')
    ok("plans", "create", "team", "--file", str(tmp_path / "team.toml"))
    listed = {p["name"]: p for p in json.loads(ok("plans", "list", "--json").stdout)}
    assert {n: p["source"] for n, p in listed.items()} == {"lite": "runtime", "pro": "catalog", "team": "runtime"}
    assert listed["team"]["spec"] == {"requests_per_5h": 50, "models": ["m1"]}
    table = ok("plans", "list").stdout
    assert "lite" in table and "runtime" in table and '{"requests_per_5h":10}' in table

    # KEY=VALUE merges (JSON values; null removes; a.b nests), --spec replaces.
    ok("plans", "set", "lite", "requests_per_5h=4", "requests_per_week=40", 'models=["m*"]')
    assert json.loads(ok("plans", "show", "lite", "--json").stdout)["spec"] == {
        "requests_per_5h": 4, "requests_per_week": 40, "models": ["m*"],
    }
    ok("plans", "set", "lite", "requests_per_week=null", "timezone=Asia/Shanghai")
    assert json.loads(ok("plans", "show", "lite", "--json").stdout)["spec"] == {
        "requests_per_5h": 4, "models": ["m*"], "timezone": "Asia/Shanghai",
    }
    ok("plans", "set", "lite", "--spec", '{"requests_per_5h": 9}')
    shown = ok("plans", "show", "lite").stdout
    assert "source: runtime" in shown and '"requests_per_5h": 9' in shown
    ok("plans", "set", "pro", "requests_per_week=70")  # the catalog's, overridden
    pro = json.loads(ok("plans", "show", "pro", "--json").stdout)
    assert pro["source"] == "runtime" and pro["overrides_catalog"] and pro["spec"] == {"requests_per_5h": 10, "requests_per_week": 70}

    # Users on run-time plans, with a subscription time.
    key = ok("users", "create", "bob", "--plan", "lite", "--subscribed-at", "2026-01-31").stdout.strip()
    assert key.startswith("sk-op-")
    ok("users", "set-plan", "bob", "--plan", "team")
    (bob,) = json.loads(ok("users", "list", "--json").stdout)
    assert bob["plan"] == "team" and bob["subscribed_at"] == datetime(2026, 1, 31, tzinfo=UTC).timestamp()
    ok("users", "set-subscribed", "bob", "1767225600")
    assert json.loads(ok("users", "list", "--json").stdout)[0]["subscribed_at"] == 1767225600
    ok("users", "set-subscribed", "bob", "created")
    (bob,) = json.loads(ok("users", "list", "--json").stdout)
    assert bob["subscribed_at"] == bob["created_at"]

    # One-line errors that say what to do.
    assert "spec.requests_per_5h" in fails("plans", "set", "lite", "requests_per_5h=lots")
    assert "spec.nonsense: unknown key" in fails("plans", "create", "x", "--spec", '{"nonsense": 1}')
    assert "not valid JSON" in fails("plans", "create", "x", "--spec", "{")
    assert "exists (runtime)" in fails("plans", "create", "lite", "--spec", "{}")
    assert "no plan named 'nope'" in fails("plans", "show", "nope")
    assert "write KEY=VALUE" in fails("plans", "set", "lite", "requests_per_5h")
    assert "1 user is on plan 'team'" in fails("plans", "delete", "team")
    assert "--subscribed-at" in fails("users", "set-subscribed", "bob", "someday")
    ok("plans", "delete", "lite")
    ok("plans", "delete", "pro")  # the catalog's pro is back
    assert "declared in" in fails("plans", "delete", "pro")
    listed = {p["name"]: p for p in json.loads(ok("plans", "list", "--json").stdout)}
    assert set(listed) == {"pro", "team"} and listed["pro"]["spec"] == {"requests_per_5h": 10}
    assert listed["team"]["users"] == 1
