"""Key -> user -> plan, from memory.

Every key is loaded at start-up into a dict keyed by its SHA-256; a background poll of the
database's ``keys_version`` (once a second, off the event loop) reloads it when a key, user or
plan assignment changed, so a key revoked with the CLI stops working within about a second.
A key not in memory (created since the last poll) costs one database lookup, and unknown keys
are remembered briefly so that a flood of bad keys cannot turn into a flood of queries.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from oneplan.errors import AuthenticationFailed
from oneplan.protocols.base import bearer_key
from oneplan.store.db import Database, KeyRecord, hash_key

log = logging.getLogger("oneplan.auth")


class KeyCache:
    def __init__(
        self, db: Database, poll_seconds: float = 1.0, before_reload: Callable[[], Awaitable[None]] | None = None,
        on_plan_change: Callable[[KeyRecord | None, KeyRecord], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        # Run before the keys are swapped in: the plans they name are brought up to date first
        # (a user moved to a plan created a moment ago finds it here).
        self.before_reload = before_reload
        # Run for each user whose plan changed, before the new keys are swapped in (the quota
        # counters bring the windows the new plan adds up to date).
        self.on_plan_change = on_plan_change
        self._keys: dict[str, KeyRecord] = {}
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._anchors: dict[int, float] = {}
        self._version = ""
        self._admin_hash = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="key-cache-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def reload(self) -> None:
        if self.before_reload is not None:
            await self.before_reload()
        version, keys, admin = await asyncio.to_thread(
            lambda: (self.db.keys_version(), self.db.all_keys(), self.db.get_meta("admin_key_hash") or "")
        )
        if self.on_plan_change is not None and self._keys:
            before = {r.user_id: r for r in self._keys.values()}
            moved = {r.user_id: r for r in keys.values() if r.user_id in before and before[r.user_id].plan != r.plan}
            for user_id, record in moved.items():
                try:
                    await self.on_plan_change(before[user_id], record)
                except Exception:
                    log.exception("bringing user %s's new plan windows up to date failed", user_id)
        self._version, self._keys, self._admin_hash = version, keys, admin
        self._anchors = {r.user_id: r.subscribed_at for r in keys.values()}
        self._misses.clear()

    def subscribed_at(self, user_id: int) -> float | None:
        """When the user's subscription began (their anniversary windows start there)."""
        return self._anchors.get(user_id)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                version = await asyncio.to_thread(self.db.keys_version)
                if version != self._version:
                    await self.reload()
            except Exception:
                log.exception("reloading keys failed; keeping the keys in memory")

    async def authenticate(self, key: str | None, now: float) -> KeyRecord:
        if not key:
            raise AuthenticationFailed(
                "No API key: send it as 'Authorization: Bearer KEY' (or 'x-api-key: KEY')."
            )
        digest = hash_key(key)
        record = self._keys.get(digest)
        if record is None:
            missed = self._misses.get(digest)
            if missed is None or now - missed > 5.0:
                record = await asyncio.to_thread(self.db.lookup_key, digest)
                if record is not None:
                    self._keys[digest] = record
                else:
                    self._misses[digest] = now
                    if len(self._misses) > 10_000:
                        self._misses.popitem(last=False)
        if record is None:
            raise AuthenticationFailed("Invalid API key.")
        if record.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked.")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationFailed("This API key has expired.")
        if record.disabled:
            raise AuthenticationFailed("This user is disabled.")
        return record

    def is_admin(self, key: str | None) -> bool:
        if not key or not self._admin_hash:
            return False
        return hmac.compare_digest(hash_key(key), self._admin_hash)


# The key from ``Authorization: Bearer`` or ``x-api-key``: what the protocols' own endpoints
# read by default (``Protocol.api_key``), and the admin, console and usage endpoints read.
bearer = bearer_key
