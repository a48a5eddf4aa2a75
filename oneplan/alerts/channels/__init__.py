"""Alert channels: one module each, found by kind. A channel is one method, ``send``."""

from __future__ import annotations

from typing import Any

from oneplan.alerts.channels.base import Channel, Message
from oneplan.alerts.channels.dingtalk import DingTalk
from oneplan.alerts.channels.email import Email
from oneplan.alerts.channels.feishu import Feishu
from oneplan.alerts.channels.slack import Slack
from oneplan.alerts.channels.sms import Sms
from oneplan.alerts.channels.webhook import Webhook
from oneplan.alerts.channels.wecom import WeCom

KINDS: dict[str, type[Channel]] = {c.kind: c for c in (Webhook, Slack, Feishu, DingTalk, WeCom, Email, Sms)}


def build(name: str, kind: str, options: dict[str, Any], where: str, *, trusted: bool = True) -> Channel:
    return KINDS[kind](name, options, where, trusted=trusted)


__all__ = ["KINDS", "Channel", "Message", "build"]
