"""Forward-only, versioned migrations with frozen DDL.

Each migration is a function named ``mNNN_what`` and recorded in ``oneplan_migrations`` once
applied. A migration's DDL is written out in the migration itself, as it was on the day it was
added, on a private ``MetaData``: it never reads ``schema.py``, so changing the live schema later
cannot change what an old migration creates on a fresh install. ``schema.py`` is the schema the
code queries; ``tests/test_migrations.py`` checks that applying every migration to an empty
database gives exactly that schema.

To change the schema: edit ``schema.py``, add the next ``mNNN_`` function here that makes the
same change (a frozen ``Table``, or ``ALTER TABLE`` text), and append it to ``MIGRATIONS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from oneplan.store import schema

Migration = Callable[[Connection], None]


def m001_initial(conn: Connection) -> None:
    md = MetaData()
    Table("meta", md, Column("key", String(100), primary_key=True), Column("value", Text, nullable=False))
    Table(
        "users", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("plan", String(200), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("disabled", Boolean, nullable=False, default=False),
    )
    Table(
        "api_keys", md,
        Column("id", String(40), primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
        Column("hash", String(64), nullable=False, unique=True),
        Column("prefix", String(20), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("expires_at", Float, nullable=True),
        Column("revoked_at", Float, nullable=True),
    )
    Table(
        "ledger", md,
        Column("id", String(64), primary_key=True),
        Column("ts", Float, nullable=False),
        Column("user_id", Integer, nullable=False),
        Column("key_id", String(40), nullable=False),
        Column("protocol", String(20), nullable=False),
        Column("model", String(200), nullable=False),
        Column("provider", String(200), nullable=True),
        Column("upstream_model", String(200), nullable=True),
        Column("stream", Boolean, nullable=False),
        Column("status", String(20), nullable=False),
        Column("http_status", Integer, nullable=False),
        Column("error_class", String(60), nullable=True),
        Column("weight", Integer, nullable=False),
        Column("input_tokens", Integer, nullable=False),
        Column("output_tokens", Integer, nullable=False),
        Column("cached_tokens", Integer, nullable=False),
        Column("reasoning_tokens", Integer, nullable=False),
        Column("cost", Float, nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("ttft_ms", Float, nullable=True),
        Column("attempts", Integer, nullable=False, default=1),
        Column("prompt", Text, nullable=True),
        Column("completion", Text, nullable=True),
        Index("ledger_user_ts", "user_id", "ts"),
        Index("ledger_ts", "ts"),
    )
    md.create_all(conn, checkfirst=True)


def m002_responses(conn: Connection) -> None:
    md = MetaData()
    Table(
        "responses", md,
        Column("id", String(64), primary_key=True),
        Column("user_id", Integer, nullable=False, index=True),
        Column("created_at", Float, nullable=False),
        Column("expires_at", Float, nullable=False, index=True),
        Column("body", LargeBinary, nullable=False),
        Column("conversation", LargeBinary, nullable=False),
    )
    md.create_all(conn, checkfirst=True)


def m003_ledger_dead(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE ledger ADD COLUMN anomalies VARCHAR(200)")
    md = MetaData()
    Table(
        "ledger_dead", md,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("request_id", String(64), nullable=False),
        Column("set_aside_at", Float, nullable=False),
        Column("error", String(200), nullable=False),
        Column("row", Text, nullable=False),
    )
    md.create_all(conn, checkfirst=True)


def m005_alerts(conn: Connection) -> None:
    md = MetaData()
    Table(
        "alert_settings", md,
        Column("user_id", Integer, primary_key=True),
        Column("config", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    Table(
        "alert_state", md,
        Column("key", String(300), primary_key=True),
        Column("period", String(40), nullable=False),
        Column("armed", Boolean, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("fired_at", Float, nullable=False),
    )
    Table(
        "alert_events", md,
        Column("key", String(400), primary_key=True),
        Column("kind", String(40), nullable=False),
        Column("user_id", Integer, nullable=True),
        Column("created_at", Float, nullable=False, index=True),
        Column("payload", Text, nullable=False),
    )
    Table(
        "alert_deliveries", md,
        Column("id", String(64), primary_key=True),
        Column("event_key", String(400), nullable=False, index=True),
        Column("channel", String(200), nullable=False),
        Column("state", String(20), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("next_at", Float, nullable=False),
        Column("lease_owner", String(100), nullable=True),
        Column("lease_until", Float, nullable=True),
        Column("last_error", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("sent_at", Float, nullable=True),
        Index("alert_deliveries_due", "state", "next_at"),
    )
    Table(
        "alert_leases", md,
        Column("name", String(100), primary_key=True),
        Column("owner", String(100), nullable=False),
        Column("until", Float, nullable=False),
    )
    md.create_all(conn, checkfirst=True)


def m004_console(conn: Connection) -> None:
    md = MetaData()

    def sums(histograms: bool) -> list[Column]:  # type: ignore[type-arg]
        columns = [
            Column("requests", BigInteger, nullable=False),
            Column("weight", BigInteger, nullable=False),
            Column("input_tokens", BigInteger, nullable=False),
            Column("output_tokens", BigInteger, nullable=False),
            Column("cached_tokens", BigInteger, nullable=False),
            Column("reasoning_tokens", BigInteger, nullable=False),
            Column("cost", Float, nullable=False),
        ]
        if not histograms:
            return [*columns, Column("errors", BigInteger, nullable=False)]
        return [
            *columns,
            Column("latency_ms_sum", Float, nullable=False),
            Column("ttft_ms_sum", Float, nullable=False),
            Column("ttft_count", BigInteger, nullable=False),
            *(Column(f"lat_b{i:02d}", BigInteger, nullable=False) for i in range(16)),
            *(Column(f"ttft_b{i:02d}", BigInteger, nullable=False) for i in range(16)),
        ]

    def detail() -> list[Column]:  # type: ignore[type-arg]
        return [
            Column("model", String(200), primary_key=True),
            Column("provider", String(200), primary_key=True),
            Column("protocol", String(20), primary_key=True),
            Column("status", String(20), primary_key=True),
            Column("error_class", String(60), primary_key=True),
        ]

    Table(
        "usage_hourly", md,
        Column("user_id", Integer, primary_key=True),
        Column("hour", BigInteger, primary_key=True),
        *detail(), *sums(True),
        sqlite_with_rowid=False,
    )
    Table(
        "usage_team_hourly", md, Column("hour", BigInteger, primary_key=True), *detail(), *sums(True),
        sqlite_with_rowid=False,
    )
    Table(
        "usage_user_hourly", md,
        Column("hour", BigInteger, primary_key=True),
        Column("user_id", Integer, primary_key=True),
        *sums(False),
        sqlite_with_rowid=False,
    )
    Table(
        "usage_team_daily", md, Column("day", BigInteger, primary_key=True), *detail(), *sums(True),
        sqlite_with_rowid=False,
    )
    Table(
        "usage_user_daily", md,
        Column("day", BigInteger, primary_key=True),
        Column("user_id", Integer, primary_key=True),
        *sums(False),
        sqlite_with_rowid=False,
    )
    Table(
        "sessions", md,
        Column("hash", String(64), primary_key=True),
        Column("user_id", Integer, nullable=True),
        Column("key_id", String(40), nullable=True),
        Column("created_at", Float, nullable=False),
        Column("expires_at", Float, nullable=False, index=True),
    )
    md.create_all(conn, checkfirst=True)
    conn.exec_driver_sql("ALTER TABLE api_keys ADD COLUMN name VARCHAR(100)")
    conn.exec_driver_sql("CREATE INDEX ledger_status_ts ON ledger (status, ts)")
    # The roll-up is filled from the ledger by oneplan.metering.rollup.ensure() (not here: a
    # migration never runs today's code).


def m006_plans(conn: Connection) -> None:
    """Plans with any windows (issue 12): cache writes and credits in the ledger and its
    roll-up, the peak multiplier a row was charged under, subscription anniversaries, and plans
    managed at run time."""

    def add(table: str, name: str, type_: object, default: str | None) -> None:
        ddl = type_.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
        tail = f" NOT NULL DEFAULT {default}" if default is not None else ""
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}{tail}")

    add("ledger", "cache_write_tokens", Integer(), "0")
    add("ledger", "credits", Float(), "0")
    add("ledger", "multiplier", Float(), "1")
    add("users", "subscribed_at", Float(), None)
    for table in ("usage_hourly", "usage_team_hourly", "usage_user_hourly", "usage_team_daily", "usage_user_daily"):
        add(table, "cache_write_tokens", BigInteger(), "0")
        add(table, "credits", Float(), "0")
    md = MetaData()
    Table(
        "plans", md,
        Column("name", String(200), primary_key=True),
        Column("spec", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    md.create_all(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [
    m001_initial, m002_responses, m003_ledger_dead, m004_console, m005_alerts, m006_plans,
]


def migrate(conn: Connection) -> list[str]:
    """Apply what is missing, in order; return the names applied."""
    schema.migrations_table.create(conn, checkfirst=True)
    done = set(conn.execute(select(schema.migrations_table.c.name)).scalars())
    applied = []
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        migration(conn)
        conn.execute(
            insert(schema.migrations_table).values(name=migration.__name__, applied_at=time.time())
        )
        applied.append(migration.__name__)
    return applied
