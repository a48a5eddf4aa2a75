"""Sealed blobs a client carries and gives back: AES-256-GCM under a server key ring.

The Responses ``encrypted_content`` of a reasoning item holds the model's reasoning and its
signature, so a stateless client (Codex sends ``store: false``) can hand them back on the next
turn. Sealed, the client can neither read it nor forge it (a forged Anthropic signature would
be forwarded to the provider as if it were the model's), and any replica opens what another
sealed, because the ring lives in the shared database.

The ring: the newest key seals, every key opens, so keys rotate without breaking
conversations in flight. Where it comes from, in order:

* ``[server] reasoning_keys = "env:NAME"``: the variable holds base64url keys of 32 bytes,
  newest first, separated by commas (``oneplan`` never writes them anywhere). To rotate, put a
  new key first and keep the old ones after it while conversations sealed with them matter;
* otherwise the database's ``meta`` table (``reasoning_keys``), generated on the first start and
  shared by every replica on that database.

Wire form: ``oneplan.r2.`` + base64url(key id (4 bytes) | nonce (12) | ciphertext | tag).
The key id picks the key; the prefix is authenticated too (AES-GCM associated data).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oneplan.errors import ConfigError

PREFIX = "oneplan.r2."
_AAD = PREFIX.encode()
META_KEY = "reasoning_keys"
KEY_BYTES = 32


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"oneplan-key-id" + key).digest()[:4]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_key(text: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{len(key)} bytes, not {KEY_BYTES}")
    return key


class KeyRing:
    """Keys newest first: ``seal`` uses the first, ``open`` whichever the blob names."""

    __slots__ = ("_by_id", "_sealer", "_sealer_id")

    def __init__(self, keys: Iterable[bytes]) -> None:
        keys = list(keys)
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._sealer_id = _key_id(keys[0])
        self._sealer = AESGCM(keys[0])
        self._by_id = {_key_id(k): AESGCM(k) for k in reversed(keys)}

    def merged(self, other: KeyRing) -> KeyRing:
        """This ring sealing with ``other``'s newest key, opening with every key of both."""
        ring = KeyRing.__new__(KeyRing)
        ring._sealer_id, ring._sealer = other._sealer_id, other._sealer
        ring._by_id = {**self._by_id, **other._by_id}
        return ring

    def seal(self, plaintext: bytes) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._sealer.encrypt(nonce, plaintext, _AAD)
        return PREFIX + base64.urlsafe_b64encode(self._sealer_id + nonce + sealed).decode().rstrip("=")

    def open(self, token: Any) -> bytes | None:
        """The plaintext, or None for anything not sealed by a key of this ring (someone
        else's blob, a forgery, a blob whose key was retired)."""
        if not isinstance(token, str) or not token.startswith(PREFIX):
            return None
        body = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        aead = self._by_id.get(raw[:4])
        if aead is None or len(raw) < 4 + 12 + 16:
            return None
        try:
            return aead.decrypt(raw[4:16], raw[16:], _AAD)
        except InvalidTag:
            return None


# The ring protocols seal with. Until a server installs the shared one (``install``), a key of
# this process alone: blobs still round-trip within it, and nothing is ever left unsealed.
_ring = KeyRing([new_key()])


def ring() -> KeyRing:
    return _ring


def install(keys: KeyRing) -> None:
    """Seal with ``keys`` from now on; keep opening what was sealed before in this process."""
    global _ring
    _ring = _ring.merged(keys)


def seal_json(value: Any) -> str:
    return _ring.seal(orjson.dumps(value))


def open_json(token: Any) -> Any:
    raw = _ring.open(token)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


# --------------------------------------------------------------------------- where keys live


def from_setting(setting: str, environ: Mapping[str, str] | None = None) -> KeyRing:
    """``env:NAME`` -> the ring in that variable (newest first, comma separated)."""
    where = "oneplan.toml [server] reasoning_keys"
    if not setting.startswith("env:"):
        raise ConfigError(f'{where}: must be "env:NAME" (keys are never written in the file)')
    name = setting[4:]
    value = (environ if environ is not None else os.environ).get(name)
    if not value:
        raise ConfigError(
            f"{where}: the variable {name} is not set: export it with one or more keys "
            "(32 random bytes each, base64url: openssl rand -base64 32 | tr '+/' '-_')"
        )
    try:
        keys = [decode_key(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{where}: {name} holds a key that is {exc}: each key is 32 bytes, base64url") from None
    if not keys:
        raise ConfigError(f"{where}: {name} holds no key")
    return KeyRing(keys)


def from_database(db: Any) -> KeyRing:
    """The ring in the shared database, created on first use (the first replica to start wins)."""
    stored = db.get_meta(META_KEY)
    if stored is None:
        stored = db.add_meta_once(META_KEY, orjson.dumps([encode_key(new_key())]).decode())
    return KeyRing(decode_key(k) for k in orjson.loads(stored))


def load(db: Any, setting: str | None) -> KeyRing:
    return from_setting(setting) if setting else from_database(db)
