"""DingTalk custom robot: ``{"msgtype": "markdown", "markdown": {"title", "text"}}``; with the
signature setting, ``&timestamp=MS&sign=...`` on the URL, sign = URL-encoded base64 of
HMAC-SHA256 keyed by the secret over ``MS\\nSECRET``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse

from oneplan.alerts.channels.base import Channel, Message
from oneplan.alerts.channels.chat import ChatOptions, post_json


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


class DingTalk(Channel):
    kind = "dingtalk"
    Options = ChatOptions
    secret_fields = ("secret",)

    async def send(self, message: Message) -> None:
        url = self.options.url  # type: ignore[attr-defined]
        secret = self.options.secret  # type: ignore[attr-defined]
        if secret:
            ms = str(int(time.time() * 1000))
            url += ("&" if "?" in url else "?") + f"timestamp={ms}&sign={dingtalk_sign(secret, ms)}"
        body = {"msgtype": "markdown", "markdown": {"title": message.title, "text": f"### {message.title}\n\n{message.markdown}"}}
        await post_json(url, body, message.timeout, "errcode")
