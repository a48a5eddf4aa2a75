"""Stored turns: what a protocol with ``stores_state`` (Responses' ``previous_response_id``,
``store`` and ``GET``/``DELETE /v1/responses/{id}``) keeps between requests.

Stateless by default: a response is kept only when the request says ``"store": true`` and the
operator's retention (``server.responses_retention_days``) is above zero. A stored response
holds its whole conversation (earlier turns' items, this input, this output) so a later request
can continue from it; it belongs to the user who made it - to anyone else its id does not exist.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import delete, insert, select

from oneplan.store import schema
from oneplan.store.db import Database


class ResponseStore:
    def __init__(self, db: Database, retention_days: float) -> None:
        self.db = db
        self.retention = retention_days * 86400

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    def load(self, response_id: str, user_id: int, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        t = schema.responses
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(t.c.body, t.c.conversation).where(
                    t.c.id == response_id, t.c.user_id == user_id, t.c.expires_at > now
                )
            ).first()
        return (orjson.loads(row.body), orjson.loads(row.conversation)) if row else None

    def save(self, response_id: str, user_id: int, body: dict[str, Any], items: list[dict[str, Any]], now: float) -> None:
        t = schema.responses
        with self.db.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.expires_at <= now))  # retention, enforced as we go
            conn.execute(
                insert(t).values(
                    id=response_id, user_id=user_id, created_at=now, expires_at=now + self.retention,
                    body=orjson.dumps(body), conversation=orjson.dumps(items),
                )
            )

    def delete(self, response_id: str, user_id: int) -> bool:
        t = schema.responses
        with self.db.engine.begin() as conn:
            return bool(conn.execute(delete(t).where(t.c.id == response_id, t.c.user_id == user_id)).rowcount)
