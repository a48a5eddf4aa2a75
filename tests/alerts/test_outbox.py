"""The outbox on SQLite and PostgreSQL: many firers racing for one crossing record it once;
a claimed delivery is nobody else's until its lease runs out; one scheduler leads at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneplan.alerts.outbox import Outbox
from oneplan.store.db import Database
from tests.support.services import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database.open(tmp_path)
        yield database
        database.close()
        return
    for url in postgres_database():
        database = Database.open(tmp_path, url)
        try:
            yield database
        finally:
            database.close()


def test_racing_firers_record_each_crossing_once(db: Database) -> None:
    outboxes = [Outbox(db) for _ in range(8)]
    results: list[str | None] = []
    barrier = threading.Barrier(8)

    def fire(outbox: Outbox, period: str) -> None:
        barrier.wait()
        for _ in range(3):
            results.append(outbox.fire("plan:pro|1|week|80", period, "quota", 1, {"title": "t"}, ("a", "b"), 100.0))

    for period in ("1763251200", "1763856000"):  # one week, then the next
        threads = [threading.Thread(target=fire, args=(o, period)) for o in outboxes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # A replica whose clock lags behind the boundary does not fire the old week again.
    assert outboxes[0].fire("plan:pro|1|week|80", "1763251200", "quota", 1, {}, ("a",), 1.0) is None
    fired = sorted(r for r in results if r is not None)
    assert fired == ["plan:pro|1|week|80|1763251200|1", "plan:pro|1|week|80|1763856000|2"]
    assert outboxes[0].status()["counts"]["pending"] == 4  # two channels per event


def test_rolling_windows_fire_again_only_once_rearmed(db: Database) -> None:
    box = Outbox(db)
    key = "plan:pro|1|5h|80"
    assert box.fire(key, "rolling", "quota", 1, {}, ("a",), 1.0) is not None
    assert box.fire(key, "rolling", "quota", 1, {}, ("a",), 2.0) is None
    assert box.fired() == {key: "rolling"}
    box.rearm([key])
    assert box.fired() == {}
    assert box.fire(key, "rolling", "quota", 1, {}, ("a",), 3.0) == f"{key}|rolling|2"


def test_a_claimed_delivery_waits_for_its_lease(db: Database) -> None:
    a, b = Outbox(db), Outbox(db)
    a.fire("k", "p", "quota", 1, {"title": "t"}, ("hook",), 10.0)
    (mine,) = a.claim("replica-a", 10.0, lease=30)
    assert mine.attempts == 1 and mine.payload["title"] == "t"
    assert b.claim("replica-b", 20.0, lease=30) == []  # held by a (a may be mid-send)
    (taken,) = b.claim("replica-b", 41.0, lease=30)  # a died: its lease ran out
    assert taken.id == mine.id and taken.attempts == 2
    a.retry(mine.id, "replica-a", "late", 50.0)  # a's stale outcome changes nothing
    b.sent(taken.id, 42.0)
    assert b.status()["counts"] == {"pending": 0, "sent": 1, "failed": 0}


def test_retry_then_give_up(db: Database) -> None:
    box = Outbox(db)
    box.fire("k", "p", "quota", 1, {}, ("hook",), 0.0)
    (d,) = box.claim("r", 0.0, 30)
    box.retry(d.id, "r", "HTTP 500", 5.0)
    assert box.claim("r", 4.0, 30) == []
    (d,) = box.claim("r", 5.0, 30)
    box.retry(d.id, "r", "HTTP 500 again", None)
    status = box.status()
    assert status["counts"]["failed"] == 1 and status["open"][0]["last_error"] == "HTTP 500 again"


def test_one_leader_at_a_time(db: Database) -> None:
    a, b = Outbox(db), Outbox(db)
    assert a.lead("scheduler", "a", 0.0, 90)
    assert not b.lead("scheduler", "b", 10.0, 90)
    assert a.lead("scheduler", "a", 60.0, 90)  # renewed
    assert not b.lead("scheduler", "b", 140.0, 90)
    assert b.lead("scheduler", "b", 151.0, 90)  # a stopped renewing
    assert not a.lead("scheduler", "a", 152.0, 90)
