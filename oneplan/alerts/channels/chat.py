"""What the chat incoming webhooks share: a JSON POST whose answer may say 200 and still
carry an error code in the body (Feishu ``code``, DingTalk and WeCom ``errcode``)."""

from __future__ import annotations

from typing import Any

import orjson

from oneplan.alerts.channels.base import Options, post
from oneplan.errors import DeliveryFailed


class ChatOptions(Options):
    url: str
    secret: str | None = None  # Feishu and DingTalk "signature" security setting


async def post_json(url: str, body: dict[str, Any], seconds: float, key: str) -> None:
    reply = await post(url, orjson.dumps(body), {"content-type": "application/json", "user-agent": "oneplan-alerts"}, seconds)
    try:
        data = orjson.loads(reply) if reply.strip() else {}
    except orjson.JSONDecodeError:
        return  # Slack answers "ok" as plain text
    if isinstance(data, dict):
        code = data.get(key, 0)
        if code not in (0, None, "0"):
            raise DeliveryFailed(f"{key} {code}: {str(data.get('msg') or data.get('errmsg') or '')[:200]}")
