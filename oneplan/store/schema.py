"""The live schema the code queries. Change it together with a new migration in ``migrations.py``
(whose DDL is frozen there); ``tests/test_migrations.py`` checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

migrations_table = Table(
    "oneplan_migrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", Float, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("plan", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # When the subscription began: anniversary windows (a month from the renewal date) count
    # from it; NULL counts from ``created_at``.
    Column("subscribed_at", Float, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),  # "key_…", shown to operators; not a secret
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("hash", String(64), nullable=False, unique=True),  # sha256 hex of the key
    Column("prefix", String(20), nullable=False),  # first characters, to recognise a key
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("name", String(100), nullable=True),  # the owner's label for it (console)
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", String(64), primary_key=True),  # the request id
    Column("ts", Float, nullable=False),  # when the request arrived (unix seconds)
    Column("user_id", Integer, nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("protocol", String(20), nullable=False),
    Column("model", String(200), nullable=False),
    Column("provider", String(200), nullable=True),
    Column("upstream_model", String(200), nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("status", String(20), nullable=False),  # ok | failed | cancelled | refused
    Column("http_status", Integer, nullable=False),
    Column("error_class", String(60), nullable=True),
    Column("weight", Integer, nullable=False),  # requests charged against request quotas
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Column("prompt", Text, nullable=True),  # only with server.store_prompts = true
    Column("completion", Text, nullable=True),
    Column("anomalies", String(200), nullable=True),  # values changed to fit (see metering/ledger.py)
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),  # in input_tokens
    Column("credits", Float, nullable=False, server_default="0"),  # plan credits, before the multiplier
    Column("multiplier", Float, nullable=False, server_default="1"),  # peak multiplier charged under
    Index("ledger_user_ts", "user_id", "ts"),
    Index("ledger_ts", "ts"),
    Index("ledger_status_ts", "status", "ts"),  # the console's ledger explorer
)

responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("body", LargeBinary, nullable=False),  # the rendered Response object (JSON)
    Column("conversation", LargeBinary, nullable=False),  # every turn's items, for continuation
)

# Ledger rows the database refused even after they were made to fit: set aside, never blocking
# the rows after them (``oneplan ledger status`` shows them).
ledger_dead = Table(
    "ledger_dead",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("set_aside_at", Float, nullable=False),
    Column("error", String(200), nullable=False),  # the error's class and SQLSTATE, never values
    Column("row", Text, nullable=False),  # the row as JSON (NUL escaped)
)

# -- alerts (oneplan/alerts/) ----------------------------------------------------------------

alert_settings = Table(
    "alert_settings",
    metadata,
    Column("user_id", Integer, primary_key=True),  # the developer's own rules, set by API
    Column("config", Text, nullable=False),  # JSON (see oneplan/alerts/subscriptions.py)
    Column("updated_at", Float, nullable=False),
)

alert_state = Table(
    "alert_state",
    metadata,
    Column("key", String(300), primary_key=True),  # rule|user|window|threshold
    Column("period", String(40), nullable=False),  # the calendar period it fired in, or "rolling"
    Column("armed", Boolean, nullable=False),
    Column("seq", Integer, nullable=False),  # how many times it fired: part of the event key
    Column("fired_at", Float, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("key", String(400), primary_key=True),  # state key|period|seq: one event per crossing
    Column("kind", String(40), nullable=False),
    Column("user_id", Integer, nullable=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("payload", Text, nullable=False),  # JSON: what every channel renders
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # the idempotency key receivers see
    Column("event_key", String(400), nullable=False, index=True),
    Column("channel", String(200), nullable=False),
    Column("state", String(20), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Index("alert_deliveries_due", "state", "next_at"),
)

alert_leases = Table(
    "alert_leases",
    metadata,
    Column("name", String(100), primary_key=True),  # "scheduler": who runs the leader's work
    Column("owner", String(100), nullable=False),
    Column("until", Float, nullable=False),
)


# The ledger's roll-up (oneplan/metering/rollup.py), written with the ledger rows, at three
# grains: per user in full detail (a developer's pages), per team without the user (the
# operator's charts and tables), per user without the detail (the operator's per-user figures);
# hourly, and the last two by UTC day too.
def _usage_sums(histograms: bool) -> list[Column]:  # type: ignore[type-arg]
    columns = [
        Column("requests", BigInteger, nullable=False),
        Column("weight", BigInteger, nullable=False),  # charged against request quotas
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        Column("cached_tokens", BigInteger, nullable=False),
        Column("reasoning_tokens", BigInteger, nullable=False),
        Column("cost", Float, nullable=False),
    ]
    added = [  # by m006, at the end
        Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
        Column("credits", Float, nullable=False, server_default="0"),
    ]
    if not histograms:
        return [*columns, Column("errors", BigInteger, nullable=False), *added]  # errors: requests not ok
    return [
        *columns,
        Column("latency_ms_sum", Float, nullable=False),
        Column("ttft_ms_sum", Float, nullable=False),
        Column("ttft_count", BigInteger, nullable=False),
        *(Column(f"lat_b{i:02d}", BigInteger, nullable=False) for i in range(16)),  # latency histogram
        *(Column(f"ttft_b{i:02d}", BigInteger, nullable=False) for i in range(16)),
        *added,
    ]


def _detail() -> list[Column]:  # type: ignore[type-arg]
    return [
        Column("model", String(200), primary_key=True),
        Column("provider", String(200), primary_key=True),  # '' when none was reached
        Column("protocol", String(20), primary_key=True),
        Column("status", String(20), primary_key=True),
        Column("error_class", String(60), primary_key=True),  # '' when ok
    ]


usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("user_id", Integer, primary_key=True),
    Column("hour", BigInteger, primary_key=True),  # unix seconds of the hour's start (UTC)
    *_detail(),
    *_usage_sums(histograms=True),
    sqlite_with_rowid=False,  # clustered by its key on SQLite: range reads are sequential
)

usage_team_hourly = Table(
    "usage_team_hourly",
    metadata,
    Column("hour", BigInteger, primary_key=True),
    *_detail(),
    *_usage_sums(histograms=True),
    sqlite_with_rowid=False,  # clustered by its key on SQLite: range reads are sequential
)

usage_user_hourly = Table(
    "usage_user_hourly",
    metadata,
    Column("hour", BigInteger, primary_key=True),
    Column("user_id", Integer, primary_key=True),
    *_usage_sums(histograms=False),
    sqlite_with_rowid=False,  # clustered by its key on SQLite: range reads are sequential
)

# The last two by UTC day, for the operator's 30- and 90-day views.
usage_team_daily = Table(
    "usage_team_daily",
    metadata,
    Column("day", BigInteger, primary_key=True),  # unix seconds of the UTC day's start
    *_detail(),
    *_usage_sums(histograms=True),
    sqlite_with_rowid=False,  # clustered by its key on SQLite: range reads are sequential
)

usage_user_daily = Table(
    "usage_user_daily",
    metadata,
    Column("day", BigInteger, primary_key=True),
    Column("user_id", Integer, primary_key=True),
    *_usage_sums(histograms=False),
    sqlite_with_rowid=False,  # clustered by its key on SQLite: range reads are sequential
)

# Plans created or changed at run time (admin API, ``oneplan plans``): a plan here overrides the
# catalog's of the same name. ``spec`` is the plan's JSON, as ``[plans.NAME]`` takes it.
plans = Table(
    "plans",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Console sign-ins: only the SHA-256 of the session token is stored.
sessions = Table(
    "sessions",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("user_id", Integer, nullable=True),  # NULL for the operator (admin key)
    Column("key_id", String(40), nullable=True),  # the key signed in with
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)
