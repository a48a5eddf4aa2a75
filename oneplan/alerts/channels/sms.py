"""SMS through an HTTP gateway: one POST per recipient, the body a template the operator
writes for their gateway, e.g. ``'{"to": "{to}", "text": "{text}"}'``. Placeholders: ``{to}``,
``{text}`` (the title and the text, cut to ``max_chars``), ``{title}``, ``{id}``; values are
JSON-escaped when the content type is JSON, form-encoded otherwise."""

from __future__ import annotations

import urllib.parse

import orjson

from oneplan.alerts.channels.base import Channel, Message, Options, post


class SmsOptions(Options):
    url: str
    to: list[str]
    template: str = '{"to": "{to}", "text": "{text}"}'
    content_type: str = "application/json"
    headers: dict[str, str] = {}  # e.g. authorization = "env:SMS_TOKEN"
    max_chars: int = 300


def render(template: str, values: dict[str, str], json_body: bool) -> str:
    out = template
    for name, value in values.items():
        escaped = orjson.dumps(value).decode()[1:-1] if json_body else urllib.parse.quote_plus(value)
        out = out.replace("{" + name + "}", escaped)
    return out


class Sms(Channel):
    kind = "sms"
    Options = SmsOptions

    def __init__(self, name: str, options: dict[str, object], where: str, *, trusted: bool = True) -> None:
        headers = dict(options.get("headers") or {})  # type: ignore[call-overload]
        if trusted:
            from oneplan.config import resolve_secret

            headers = {k: resolve_secret(v, f"{where}.headers.{k}") for k, v in headers.items()}
        super().__init__(name, {**options, "headers": headers}, where, trusted=trusted)

    async def send(self, message: Message) -> None:
        options: SmsOptions = self.options  # type: ignore[assignment]
        text = f"{message.title}: {message.text}"[: options.max_chars]
        json_body = "json" in options.content_type
        for number in options.to:
            values = {"to": number, "text": text, "title": message.title, "id": message.id}
            body = render(options.template, values, json_body).encode()
            headers = {"content-type": options.content_type, "idempotency-key": f"{message.id}:{number}", **options.headers}
            await post(options.url, body, headers, message.timeout)
