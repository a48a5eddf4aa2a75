"""Migrations with frozen DDL: a fresh install built by applying every migration has exactly the
schema the code queries (``schema.py``), on SQLite and on PostgreSQL; migrating is idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from oneplan.store import schema
from oneplan.store.migrations import MIGRATIONS, migrate
from tests.support.services import postgres_database


def shape(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            out[table] = {
                "columns": [
                    (c["name"], type(c["type"]).__name__, c["nullable"], getattr(c["type"], "length", None))
                    for c in insp.get_columns(table)
                ],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
                "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
                "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)),
            }
        return out
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    a = postgres_database()
    b = postgres_database()
    yield next(a), next(b)
    for gen in (a, b):
        next(gen, None)


def test_migrations_build_exactly_the_live_schema(two_empty: tuple[str, str]) -> None:
    migrated, declared = two_empty
    engine = create_engine(migrated)
    with engine.begin() as conn:
        assert migrate(conn) == [m.__name__ for m in MIGRATIONS]
    with engine.begin() as conn:
        assert migrate(conn) == []  # recorded: nothing runs twice
    engine.dispose()
    engine = create_engine(declared)
    schema.metadata.create_all(engine)
    engine.dispose()
    assert shape(migrated) == shape(declared)


def test_migrations_never_read_the_live_schema() -> None:
    source = Path(schema.__file__).with_name("migrations.py").read_text()
    code = source.split('"""', 2)[2].split("def migrate(")[0]  # past the docstring, before migrate()
    # Only the bookkeeping table may come from schema.py; every migration spells out its DDL.
    assert "schema." not in code.replace("schema.migrations_table", "")
