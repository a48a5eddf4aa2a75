"""The database: users, keys, the ledger, stored responses. Synchronous SQLAlchemy Core; the
server calls it from worker threads (``asyncio.to_thread``), never from the event loop."""

from __future__ import annotations

import hashlib
import operator
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from oneplan.errors import ConfigError
from oneplan.metering import rollup
from oneplan.metering.plans import Amounts
from oneplan.store import schema
from oneplan.store.migrations import migrate

KEY_PREFIX = "sk-op-"
LEDGER_COLUMNS = tuple(c.name for c in schema.ledger.columns)
_LEDGER_VALUES = operator.itemgetter(*LEDGER_COLUMNS)

# sqlite3 binds an int, float, str or bytearray parameter as it is, but looks for an adapter for
# anything else - None and bool included: with none registered it asks the type and the value
# for ``__adapt__`` / ``__conform__``, and each miss formats an AttributeError. A ledger row has a
# dozen such values (its NULLs, ``stream``): ~1,250 instructions each, ~500 with these adapters
# (callgrind). They give what sqlite3 binds anyway (NULL; a bool as 0 or 1) and end the search at
# the registry; neither is a base type, so sqlite3 keeps binding the others without a lookup.
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)  # None -> None, and in C (a Python function costs more)
sqlite3.register_adapter(bool, int)


def _tokens(led: Any) -> Any:
    """Input plus output tokens, in 64 bits: two INTEGER columns can add up past 2^31."""
    return cast(led.c.input_tokens, BigInteger) + cast(led.c.output_tokens, BigInteger)


def hash_key(key: str) -> str:
    """Keys are 256 random bits, so a plain SHA-256 is as strong as a slow KDF here."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    user_id: int
    user_name: str
    plan: str
    expires_at: float | None
    revoked_at: float | None
    disabled: bool
    # When the user's subscription began (``users.subscribed_at``, else when the user was
    # created): anniversary windows count from it. Loaded with the key, never per request.
    subscribed_at: float


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    plan: str
    created_at: float
    disabled: bool
    subscribed_at: float | None = None  # None: counts from created_at

    @property
    def subscribed(self) -> float:
        return self.created_at if self.subscribed_at is None else self.subscribed_at


@dataclass(frozen=True, slots=True)
class PlanRow:
    """A plan created or changed at run time: its spec is ``[plans.NAME]`` as JSON."""

    name: str
    spec: dict[str, Any]
    updated_at: float


class PlanInUse(ValueError):
    def __init__(self, name: str, users: int) -> None:
        super().__init__(
            f"{users} user{'s are' if users != 1 else ' is'} on plan {name!r}: move them first "
            f"(oneplan users set-plan NAME --plan OTHER)"
        )
        self.users = users


def _user(row: Any) -> UserRecord:
    return UserRecord(row.id, row.name, row.plan, row.created_at, row.disabled, row.subscribed_at)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None) -> Database:
        data_dir.mkdir(parents=True, exist_ok=True)
        if url is None:
            url = f"sqlite:///{data_dir / 'oneplan.db'}"
        try:
            # hide_parameters: an error names the statement, never its values (prompts, keys).
            engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"), hide_parameters=True)
        except Exception as exc:
            raise ConfigError(f"server.database_url: cannot use {url.split('@')[-1]!r}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        db = cls(engine)
        db.migrate()
        return db

    def migrate(self) -> list[str]:
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    return migrate(conn)
            except (IntegrityError, OperationalError):
                # Another process (a CLI call, a second worker) migrated at the same moment.
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return []

    def close(self) -> None:
        self.engine.dispose()

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()

    def add_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` unless ``key`` is there already; the stored value either way (when
        several processes race, the first insert wins and every one returns it)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(schema.meta).values(key=key, value=value))
        except IntegrityError:
            pass
        stored = self.get_meta(key)
        assert stored is not None
        return stored

    def ensure_admin_key(self) -> str | None:
        """Create the admin key on first start; return it then (only then), else None."""
        if self.get_meta("admin_key_hash"):
            return None
        key = KEY_PREFIX + "admin-" + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(schema.meta).values(key="admin_key_hash", value=hash_key(key)))
        except IntegrityError:
            return None  # another process created it first
        return key

    def keys_version(self) -> str:
        """Changes whenever a key, a user or a plan assignment changes: servers poll it."""
        return self.get_meta("keys_version") or ""

    def _bump_keys_version(self, conn: Any) -> None:
        self._bump(conn, "keys_version")

    def _bump(self, conn: Any, key: str) -> None:
        """A new random token under ``key``, in the caller's transaction (so a poller that sees
        it sees the write too)."""
        token = secrets.token_hex(8)
        done = conn.execute(update(schema.meta).where(schema.meta.c.key == key).values(value=token)).rowcount
        if not done:
            conn.execute(insert(schema.meta).values(key=key, value=token))

    def versions(self) -> tuple[str, str]:
        """(plans_version, keys_version) in one query: what every replica polls."""
        m = schema.meta
        with self.engine.connect() as conn:
            found = dict(conn.execute(select(m.c.key, m.c.value).where(m.c.key.in_(("plans_version", "keys_version")))).all())
        return found.get("plans_version", ""), found.get("keys_version", "")

    # -- plans created at run time -----------------------------------------------------------

    def list_plans(self) -> list[PlanRow]:
        p = schema.plans
        with self.engine.connect() as conn:
            rows = conn.execute(select(p.c.name, p.c.spec, p.c.updated_at).order_by(p.c.name)).all()
        return [PlanRow(r.name, orjson.loads(r.spec), r.updated_at) for r in rows]

    def get_plan(self, name: str) -> PlanRow | None:
        p = schema.plans
        with self.engine.connect() as conn:
            row = conn.execute(select(p.c.name, p.c.spec, p.c.updated_at).where(p.c.name == name)).first()
        return PlanRow(row.name, orjson.loads(row.spec), row.updated_at) if row else None

    def upsert_plan(self, name: str, spec: dict[str, Any], *, create_only: bool = False) -> bool:
        """Store ``spec`` (validated by the caller) under ``name``; True if the plan is new.
        ``create_only``: a plan of that name already stored is a ``ValueError``."""
        p = schema.plans
        values = {"spec": orjson.dumps(spec).decode(), "updated_at": time.time()}
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    done = 0
                    if not create_only:
                        done = conn.execute(update(p).where(p.c.name == name).values(**values)).rowcount
                    if not done:
                        conn.execute(insert(p).values(name=name, **values))
                    self._bump(conn, "plans_version")
                return not done
            except IntegrityError:
                if create_only:
                    raise ValueError(f"a plan named {name!r} already exists") from None
                if attempt == 2:  # two writers inserted the same new plan at once: update now
                    raise
        return False

    def delete_plan(self, name: str, *, users_may_stay: bool = False) -> bool:
        """Delete a run-time plan; False if there is none. While users are on it a
        ``PlanInUse``, unless ``users_may_stay`` (a catalog plan of that name takes over)."""
        with self.engine.begin() as conn:
            if not users_may_stay:
                on = conn.execute(
                    select(func.count()).select_from(schema.users).where(schema.users.c.plan == name)
                ).scalar() or 0
                if on:
                    raise PlanInUse(name, int(on))
            done = conn.execute(delete(schema.plans).where(schema.plans.c.name == name)).rowcount
            if done:
                self._bump(conn, "plans_version")
        return bool(done)

    def plan_users(self) -> dict[str, int]:
        """How many users each plan has (by name, whether or not the plan still exists)."""
        u = schema.users
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(select(u.c.plan, func.count()).group_by(u.c.plan))}

    # -- users and keys --------------------------------------------------------------------

    def create_user(
        self, name: str, plan: str, subscribed_at: float | None = None
    ) -> tuple[UserRecord, str, str]:
        """A user and their first key: (user, key id, plaintext key). ``subscribed_at`` None:
        the subscription counts from now (the user's creation)."""
        now = time.time()
        with self.engine.begin() as conn:
            try:
                inserted = conn.execute(
                    insert(schema.users).values(
                        name=name, plan=plan, created_at=now, disabled=False, subscribed_at=subscribed_at
                    )
                ).inserted_primary_key
                assert inserted is not None  # an INSERT's result always has it
                user_id = inserted[0]
            except IntegrityError:
                raise ValueError(f"a user named {name!r} already exists") from None
            key_id, key = self._insert_key(conn, user_id, None)
        return UserRecord(user_id, name, plan, now, False, subscribed_at), key_id, key

    def set_plan(self, name: str, plan: str) -> None:
        """Move a user to ``plan``. What they used stays theirs: counters are per user, so the
        new plan's windows start from it."""
        self.update_user(name, plan=plan)

    def set_subscribed_at(self, name: str, subscribed_at: float | None) -> None:
        """When the user's subscription began (anniversary windows); None: from creation."""
        self.update_user(name, subscribed_at=subscribed_at)

    def update_user(self, name: str, **values: Any) -> None:
        """Change ``plan``, ``subscribed_at`` and/or ``disabled`` in one transaction that
        tells every replica (``keys_version``)."""
        unknown = set(values) - {"plan", "subscribed_at", "disabled"}
        assert not unknown, unknown
        with self.engine.begin() as conn:
            if not conn.execute(update(schema.users).where(schema.users.c.name == name).values(**values)).rowcount:
                raise ValueError(f"no user named {name!r}")
            self._bump_keys_version(conn)

    def get_user(self, name: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.users).where(schema.users.c.name == name)).first()
        return _user(row) if row else None

    def list_users(self) -> list[UserRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.users).order_by(schema.users.c.name)).all()
        return [_user(r) for r in rows]

    def _insert_key(self, conn: Any, user_id: int, expires_at: float | None) -> tuple[str, str]:
        key = new_key()
        key_id = "key_" + secrets.token_hex(8)
        conn.execute(
            insert(schema.api_keys).values(
                id=key_id,
                user_id=user_id,
                hash=hash_key(key),
                prefix=key[: len(KEY_PREFIX) + 4],
                created_at=time.time(),
                expires_at=expires_at,
            )
        )
        self._bump_keys_version(conn)
        return key_id, key

    def create_key(self, user_name: str, expires_at: float | None = None) -> tuple[str, str]:
        with self.engine.begin() as conn:
            user_id = conn.execute(
                select(schema.users.c.id).where(schema.users.c.name == user_name)
            ).scalar()
            if user_id is None:
                raise ValueError(f"no user named {user_name!r} (create it: oneplan users create {user_name} --plan PLAN)")
            return self._insert_key(conn, user_id, expires_at)

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(schema.api_keys)
                .where(schema.api_keys.c.id == key_id, schema.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
            if done:
                self._bump_keys_version(conn)
        return bool(done)

    def list_keys(self, user_name: str | None = None) -> list[dict[str, Any]]:
        k, u = schema.api_keys, schema.users
        query = select(k.c.id, k.c.prefix, k.c.created_at, k.c.expires_at, k.c.revoked_at, u.c.name).join(
            u, u.c.id == k.c.user_id
        )
        if user_name is not None:
            query = query.where(u.c.name == user_name)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(u.c.name, k.c.created_at)).all()
        return [
            {
                "id": r.id,
                "user": r.name,
                "prefix": r.prefix,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "revoked_at": r.revoked_at,
            }
            for r in rows
        ]

    def _key_query(self) -> Any:
        k, u = schema.api_keys, schema.users
        return select(
            k.c.hash, k.c.id, k.c.user_id, u.c.name, u.c.plan, k.c.expires_at, k.c.revoked_at, u.c.disabled,
            func.coalesce(u.c.subscribed_at, u.c.created_at),
        ).join(u, u.c.id == k.c.user_id)

    def lookup_key(self, key_hash: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._key_query().where(schema.api_keys.c.hash == key_hash)).first()
        return KeyRecord(*row[1:]) if row else None

    def all_keys(self) -> dict[str, KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._key_query()).all()
        return {row[0]: KeyRecord(*row[1:]) for row in rows}

    # -- ledger ----------------------------------------------------------------------------

    def insert_ledger(self, rows: Sequence[dict[str, Any]]) -> str:
        """Insert ``rows`` in one transaction; return the counter generation it committed under.

        Idempotent by request id: replaying a journal twice inserts each row once. Straight to
        the driver (one prepared statement, ``executemany`` of tuples): it runs beside the event
        loop on every flush, and SQLAlchemy's statement compilation doubled its cost. The
        transaction takes the write lock first (SQLite) or is ordered by the rebuild's table
        lock (PostgreSQL), so it is wholly before or wholly after a counter rebuild's read.
        """
        try:
            params = list(map(_LEDGER_VALUES, rows))  # rows from the ledger carry every column
        except KeyError:
            params = [tuple(row.get(c) for c in LEDGER_COLUMNS) for row in rows]
        with self.engine.begin() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            if params:
                rollup.add(conn, rows)  # the roll-up commits with the rows, or neither does
                conn.exec_driver_sql(self._ledger_insert, params)
            return self._counters_gen(conn)

    def _counters_gen(self, conn: Any) -> str:
        value = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "counters_gen")).scalar()
        return str(value or "0")

    def snapshot_for_counters(self, since: float) -> tuple[list[tuple[Any, ...]], str]:
        """What the quota counters are rebuilt from, and their new generation, in one
        transaction that no ledger flush interleaves with (see ``insert_ledger``)."""
        with self.engine.begin() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("LOCK TABLE ledger IN SHARE MODE")
            rows = [tuple(r) for r in conn.execute(self._charged_query(since, None))]
            generation = str(int(self._counters_gen(conn)) + 1)
            done = conn.execute(
                update(schema.meta).where(schema.meta.c.key == "counters_gen").values(value=generation)
            ).rowcount
            if not done:
                conn.execute(insert(schema.meta).values(key="counters_gen", value=generation))
        return rows, generation

    def outcomes(self, ids: Sequence[str]) -> dict[str, tuple[str, Amounts]]:
        """Ledger rows by request id: (status, the real usage in every plan unit)."""
        led = schema.ledger
        out: dict[str, tuple[str, Amounts]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                query = select(led.c.id, led.c.status, _tokens(led), led.c.cost, led.c.weight, led.c.credits).where(
                    led.c.id.in_(list(ids[i : i + 500]))
                )
                for r in conn.execute(query):
                    out[r[0]] = (r[1], Amounts.charged(r[4], r[2], r[5], r[3]))
        return out

    def set_aside(self, rows: Sequence[tuple[dict[str, Any], str]]) -> None:
        """Keep rows the database refused, with why (class and SQLSTATE only)."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                insert(schema.ledger_dead),
                [
                    {"request_id": str(row.get("id"))[:64], "set_aside_at": now, "error": error[:200],
                     "row": orjson.dumps(row, default=str).decode()}
                    for row, error in rows
                ],
            )

    def dead_rows(self, limit: int = 20) -> tuple[int, list[dict[str, Any]]]:
        t = schema.ledger_dead
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(t)).scalar() or 0
            rows = conn.execute(
                select(t.c.request_id, t.c.set_aside_at, t.c.error).order_by(t.c.seq.desc()).limit(limit)
            ).all()
        return int(count), [{"id": r[0], "set_aside_at": r[1], "error": r[2]} for r in rows]

    @property
    def _ledger_insert(self) -> str:
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return (
            f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(LEDGER_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
        )

    def ledger_rows(self, *, user_id: int | None = None, since: float | None = None) -> list[dict[str, Any]]:
        query = select(schema.ledger).order_by(schema.ledger.c.ts)
        if user_id is not None:
            query = query.where(schema.ledger.c.user_id == user_id)
        if since is not None:
            query = query.where(schema.ledger.c.ts >= since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def charged_since(self, since: float, user_ids: Iterable[int] | None = None) -> list[tuple[Any, ...]]:
        """(user_id, second, weight, tokens, cost, credits, calls, multiplier, plan,
        subscribed_at) per second with charged requests, for rebuilding quota counters."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(self._charged_query(since, user_ids))]

    def _charged_query(self, since: float, user_ids: Iterable[int] | None) -> Any:
        led, u = schema.ledger, schema.users
        second = func.cast(led.c.ts, Integer)
        anchor = func.coalesce(u.c.subscribed_at, u.c.created_at)
        query = (
            select(
                led.c.user_id,
                second,
                func.sum(led.c.weight),
                func.sum(_tokens(led)),
                func.sum(led.c.cost),
                func.sum(led.c.credits),
                func.count(),
                led.c.multiplier,
                func.max(u.c.plan),
                func.max(anchor),
            )
            .select_from(led.outerjoin(u, u.c.id == led.c.user_id))
            .where(led.c.ts >= since, led.c.status.in_(("ok", "cancelled")))
            .group_by(led.c.user_id, second, led.c.multiplier)
        )
        if user_ids is not None:
            query = query.where(led.c.user_id.in_(list(user_ids)))
        return query

    def usage_totals(self, user_id: int | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Per user and model: requests, tokens, cost."""
        led, u = schema.ledger, schema.users
        query = (
            select(
                u.c.name,
                led.c.model,
                func.count(),
                func.sum(led.c.weight),
                func.sum(led.c.input_tokens),
                func.sum(led.c.output_tokens),
                func.sum(led.c.cached_tokens),
                func.sum(led.c.reasoning_tokens),
                func.sum(led.c.cost),
                func.sum(func.cast(led.c.status != "ok", Integer)),
            )
            .join(u, u.c.id == led.c.user_id)
            .group_by(u.c.name, led.c.model)
            .order_by(u.c.name, led.c.model)
        )
        if user_id is not None:
            query = query.where(led.c.user_id == user_id)
        if since is not None:
            query = query.where(led.c.ts >= since)
        keys = (
            "user", "model", "requests", "charged_requests", "input_tokens", "output_tokens",
            "cached_tokens", "reasoning_tokens", "cost", "not_ok",
        )
        with self.engine.connect() as conn:
            return [dict(zip(keys, r, strict=True)) for r in conn.execute(query)]
