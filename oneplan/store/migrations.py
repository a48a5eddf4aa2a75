"""Forward-only migrations, each a function, each recorded in ``oneplan_migrations`` once applied."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, insert, select

from oneplan.store import schema

Migration = Callable[[Connection], None]


def m001_initial(conn: Connection) -> None:
    for table in (schema.meta, schema.users, schema.api_keys, schema.ledger):
        table.create(conn, checkfirst=True)


def m002_responses(conn: Connection) -> None:
    schema.responses.create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [m001_initial, m002_responses]


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
