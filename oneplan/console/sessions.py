"""Server-side console sessions, stored as the SHA-256 of a random token.

The browser holds the token in an HttpOnly, SameSite=Strict cookie (Secure over TLS); the CSRF
token every state-changing call must echo in ``X-CSRF-Token`` is derived from the session
token, so a page that cannot read the cookie cannot forge it. Sign-in attempts are rate-limited
per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from oneplan.store import schema
from oneplan.store.db import Database

COOKIE = "oneplan_session"
PRESESSION_COOKIE = "oneplan_signin"
SESSION_SECONDS = 12 * 3600


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(token: str) -> str:
    return hashlib.sha256(b"oneplan-csrf:" + token.encode()).hexdigest()[:40]


def csrf_ok(token: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_for(token), sent or "")


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user_id: int | None  # None: the operator
    user_name: str | None
    plan: str | None
    expires_at: float

    @property
    def is_admin(self) -> bool:
        return self.user_id is None

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)


class SessionStore:
    def __init__(self, db: Database, seconds: float = SESSION_SECONDS) -> None:
        self.db = db
        self.seconds = seconds

    def create(self, user_id: int | None, key_id: str | None, now: float) -> str:
        token = secrets.token_urlsafe(32)
        s = schema.sessions
        with self.db.engine.begin() as conn:
            conn.execute(delete(s).where(s.c.expires_at <= now))
            conn.execute(
                insert(s).values(
                    hash=_digest(token), user_id=user_id, key_id=key_id, created_at=now,
                    expires_at=now + self.seconds,
                )
            )
        return token

    def get(self, token: str, now: float) -> Session | None:
        """The live session for ``token``: not expired, its user enabled, its key not revoked."""
        s, u, k = schema.sessions, schema.users, schema.api_keys
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(s.c.user_id, s.c.key_id, s.c.expires_at).where(s.c.hash == _digest(token))
            ).first()
            if row is None or row.expires_at <= now:
                return None
            if row.user_id is None:
                return Session(token, None, None, None, row.expires_at)
            user = conn.execute(
                select(u.c.name, u.c.plan, u.c.disabled, k.c.revoked_at, k.c.expires_at)
                .join(k, k.c.user_id == u.c.id)
                .where(u.c.id == row.user_id, k.c.id == row.key_id)
            ).first()
        if user is None or user.disabled or user.revoked_at is not None:
            return None
        if user.expires_at is not None and user.expires_at <= now:
            return None
        return Session(token, row.user_id, user.name, user.plan, row.expires_at)

    def end(self, token: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(delete(schema.sessions).where(schema.sessions.c.hash == _digest(token)))


class SignInLimiter:
    """At most ``attempts`` sign-ins per ``seconds`` from one address (a sliding count)."""

    def __init__(self, attempts: int = 10, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.seconds = seconds
        self.clock = clock
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, address: str) -> float:
        """0 if this attempt may go ahead, else the seconds to wait."""
        now = self.clock()
        times = [t for t in self._seen.pop(address, []) if now - t < self.seconds]
        if len(times) >= self.attempts:
            self._seen[address] = times
            return self.seconds - (now - times[0])
        times.append(now)
        self._seen[address] = times
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return 0.0
