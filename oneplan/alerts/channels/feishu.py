"""Feishu (Lark) custom bot: ``{"msg_type": "text", "content": {"text": ...}}``; with the
signature setting, ``timestamp`` (seconds) and ``sign`` = base64 of HMAC-SHA256 keyed by
``TIMESTAMP\\nSECRET`` over an empty message."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from oneplan.alerts.channels.base import Channel, Message
from oneplan.alerts.channels.chat import ChatOptions, post_json


def feishu_sign(secret: str, timestamp: str) -> str:
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


class Feishu(Channel):
    kind = "feishu"
    Options = ChatOptions
    secret_fields = ("secret",)

    async def send(self, message: Message) -> None:
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": f"{message.title}\n{message.text}"}}
        secret = self.options.secret  # type: ignore[attr-defined]
        if secret:
            timestamp = str(int(time.time()))
            body = {"timestamp": timestamp, "sign": feishu_sign(secret, timestamp), **body}
        await post_json(self.options.url, body, message.timeout, "code")  # type: ignore[attr-defined]
