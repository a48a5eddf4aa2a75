"""Slack incoming webhook: ``{"text": ...}`` (mrkdwn), with a header and section block."""

from __future__ import annotations

from oneplan.alerts.channels.base import Channel, Message
from oneplan.alerts.channels.chat import ChatOptions, post_json


class Slack(Channel):
    kind = "slack"
    Options = ChatOptions

    async def send(self, message: Message) -> None:
        body = {
            "text": f"{message.title}\n{message.text}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": message.markdown[:3000]}},
            ],
        }
        await post_json(self.options.url, body, message.timeout, "code")  # type: ignore[attr-defined]
