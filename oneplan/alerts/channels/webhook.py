"""A generic JSON webhook, signed: ``X-Oneplan-Signature: t=TIMESTAMP,v1=HEX`` where HEX is
HMAC-SHA256 of ``TIMESTAMP.BODY`` with the shared secret; ``Idempotency-Key`` names the
delivery (the same on every retry). A receiver rejects a timestamp far from its clock."""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson

from oneplan.alerts.channels.base import Channel, Message, Options, post


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookOptions(Options):
    url: str
    secret: str | None = None
    headers: dict[str, str] = {}


class Webhook(Channel):
    kind = "webhook"
    Options = WebhookOptions
    secret_fields = ("secret",)

    async def send(self, message: Message) -> None:
        options: WebhookOptions = self.options  # type: ignore[assignment]
        body = orjson.dumps({"id": message.id, **message.payload})
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "user-agent": "oneplan-alerts",
            "idempotency-key": message.id,
            "x-oneplan-timestamp": timestamp,
            **options.headers,
        }
        if options.secret:
            headers["x-oneplan-signature"] = f"t={timestamp},v1={signature(options.secret, timestamp, body)}"
        await post(options.url, body, headers, message.timeout)
