"""The outbox: a crossing is recorded once, whichever replica sees it first, and each of its
deliveries is claimed with a lease, so a replica killed before delivering leaves it to another.

* ``fire``: one transaction flips the state row (a conditional ``UPDATE``, or the first
  ``INSERT``: the database serialises replicas racing for the same crossing) and inserts the
  event and one delivery per channel. Only the replica whose statement changed the row fires.
* ``claim``: a due, unleased delivery becomes ours for ``lease`` seconds (conditional UPDATE).
* ``sent`` / ``retry``: the outcome; a delivery that keeps failing ends ``failed``, visible in
  ``oneplan alerts status``. A delivery's id is the idempotency key receivers see: a replica
  killed mid-send means the receiver may see it twice, with the same key.

Synchronous SQLAlchemy Core, on SQLite and PostgreSQL; the service calls it from its own
worker thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, func, insert, or_, select, update

from oneplan.alerts.detect import ROLLING
from oneplan.store import schema
from oneplan.store.db import Database

st, ev, dl, ls = schema.alert_state, schema.alert_events, schema.alert_deliveries, schema.alert_leases


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    event_key: str
    channel: str
    attempts: int  # including this one
    payload: dict[str, Any]


def _insert_new(conn: Any, table: Any, **values: Any) -> bool:
    """INSERT unless the primary key exists (ON CONFLICT DO NOTHING): True if inserted."""
    pk = next(iter(table.primary_key.columns))
    # RETURNING, not rowcount: psycopg reports -1 rows for an INSERT ... ON CONFLICT DO NOTHING.
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement = postgresql_insert(table).values(**values).on_conflict_do_nothing().returning(pk)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).values(**values).on_conflict_do_nothing().returning(pk)
    return conn.execute(statement).first() is not None


def delivery_id(event_key: str, channel: str) -> str:
    return "dlv_" + hashlib.sha256(f"{event_key}|{channel}".encode()).hexdigest()[:40]


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def fire(
        self, key: str, period: str, kind: str, user_id: int | None, payload: dict[str, Any],
        channels: tuple[str, ...], now: float,
    ) -> str | None:
        """Record the crossing if nobody has: the event key, or None if it was already fired."""
        with self.db.engine.begin() as conn:
            changed = conn.execute(
                update(st)
                # A later period re-arms (periods are equal-length epoch strings, so they sort
                # as text); an earlier one - a replica whose clock lags at the boundary - does not.
                .where(st.c.key == key, or_(st.c.armed.is_(True), and_(st.c.period != ROLLING, st.c.period < period)))
                .values(armed=False, period=period, seq=st.c.seq + 1, fired_at=now)
            ).rowcount
            if changed:
                seq = conn.execute(select(st.c.seq).where(st.c.key == key)).scalar_one()
            else:
                if conn.execute(select(st.c.key).where(st.c.key == key)).first() is not None:
                    return None  # fired already, this period
                if not _insert_new(conn, st, key=key, period=period, armed=False, seq=1, fired_at=now):
                    return None  # another replica inserted it first
                seq = 1
            event_key = f"{key}|{period}|{seq}"
            body = {**payload, "event_key": event_key}
            conn.execute(
                insert(ev).values(
                    key=event_key, kind=kind, user_id=user_id, created_at=now, payload=orjson.dumps(body).decode()
                )
            )
            for channel in channels:
                conn.execute(
                    insert(dl).values(
                        id=delivery_id(event_key, channel), event_key=event_key, channel=channel,
                        state="pending", attempts=0, next_at=now, created_at=now,
                    )
                )
        return event_key

    def rearm(self, keys: list[str]) -> None:
        if not keys:
            return
        with self.db.engine.begin() as conn:
            conn.execute(update(st).where(st.c.key.in_(keys), st.c.armed.is_(False)).values(armed=True))

    def fired(self) -> dict[str, str]:
        """Every state key that has fired and not re-armed: its period."""
        with self.db.engine.connect() as conn:
            return dict(conn.execute(select(st.c.key, st.c.period).where(st.c.armed.is_(False))).all())

    # -- deliveries ------------------------------------------------------------------------

    def claim(self, owner: str, now: float, lease: float, limit: int = 20) -> list[Delivery]:
        free = or_(dl.c.lease_until.is_(None), dl.c.lease_until < now)
        due = and_(dl.c.state == "pending", dl.c.next_at <= now, free)
        out = []
        with self.db.engine.begin() as conn:
            ids = conn.execute(select(dl.c.id).where(due).order_by(dl.c.next_at).limit(limit)).scalars().all()
            for delivery in ids:
                got = conn.execute(
                    update(dl)
                    .where(dl.c.id == delivery, due)
                    .values(lease_owner=owner, lease_until=now + lease, attempts=dl.c.attempts + 1)
                ).rowcount
                if got:
                    row = conn.execute(
                        select(dl.c.id, dl.c.event_key, dl.c.channel, dl.c.attempts, ev.c.payload)
                        .join(ev, ev.c.key == dl.c.event_key)
                        .where(dl.c.id == delivery)
                    ).one()
                    out.append(Delivery(row.id, row.event_key, row.channel, row.attempts, orjson.loads(row.payload)))
        return out

    def sent(self, delivery: str, now: float) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                update(dl).where(dl.c.id == delivery, dl.c.state == "pending")
                .values(state="sent", sent_at=now, lease_owner=None, lease_until=None, last_error=None)
            )

    def retry(self, delivery: str, owner: str, error: str, next_at: float | None) -> None:
        """Try again at ``next_at``; ``None``: give up (``failed``)."""
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "last_error": error[:500]}
        if next_at is None:
            values["state"] = "failed"
        else:
            values["next_at"] = next_at
        with self.db.engine.begin() as conn:
            conn.execute(
                update(dl).where(dl.c.id == delivery, dl.c.state == "pending", dl.c.lease_owner == owner).values(**values)
            )

    def status(self, limit: int = 50) -> dict[str, Any]:
        with self.db.engine.connect() as conn:
            counts: dict[str, int] = dict(conn.execute(select(dl.c.state, func.count()).group_by(dl.c.state)).all())
            rows = conn.execute(
                select(
                    dl.c.id, dl.c.channel, dl.c.state, dl.c.attempts, dl.c.next_at, dl.c.last_error,
                    dl.c.created_at, ev.c.kind, ev.c.key,
                )
                .join(ev, ev.c.key == dl.c.event_key)
                .where(dl.c.state != "sent")
                .order_by(dl.c.created_at.desc())
                .limit(limit)
            ).all()
        return {
            "counts": {s: int(counts.get(s, 0)) for s in ("pending", "sent", "failed")},
            "open": [
                {
                    "id": r.id, "channel": r.channel, "state": r.state, "attempts": r.attempts,
                    "next_at": r.next_at, "last_error": r.last_error, "created_at": r.created_at,
                    "kind": r.kind, "event": r.key,
                }
                for r in rows
            ],
        }

    def events(self, since: float = 0.0, user_id: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(ev).where(ev.c.created_at >= since)
        if user_id is not None:
            query = query.where(ev.c.user_id == user_id)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query.order_by(ev.c.created_at.desc()).limit(limit)).all()[::-1]
        return [{"key": r.key, "kind": r.kind, "user_id": r.user_id, **orjson.loads(r.payload)} for r in rows]

    # -- the leader's lease ----------------------------------------------------------------

    def lead(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Hold (or take over an expired) lease: True while this process leads."""
        with self.db.engine.begin() as conn:
            if conn.execute(
                update(ls).where(ls.c.name == name, or_(ls.c.owner == owner, ls.c.until < now)).values(owner=owner, until=now + ttl)
            ).rowcount:
                return True
            if conn.execute(select(ls.c.name).where(ls.c.name == name)).first() is not None:
                return False
            return _insert_new(conn, ls, name=name, owner=owner, until=now + ttl)
