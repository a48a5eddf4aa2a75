"""WeCom (企业微信) group robot: ``{"msgtype": "markdown", "markdown": {"content": ...}}``; the
robot's key is in its URL (``.../webhook/send?key=...``), so the URL is the secret."""

from __future__ import annotations

from oneplan.alerts.channels.base import Channel, Message
from oneplan.alerts.channels.chat import ChatOptions, post_json


class WeCom(Channel):
    kind = "wecom"
    Options = ChatOptions
    secret_fields = ("url",)

    async def send(self, message: Message) -> None:
        content = f"**{message.title}**\n{message.markdown}"[:4000]
        body = {"msgtype": "markdown", "markdown": {"content": content}}
        await post_json(self.options.url, body, message.timeout, "errcode")  # type: ignore[attr-defined]
