"""Email over SMTP: plain text plus HTML (multipart/alternative), over STARTTLS, implicit TLS
(port 465) or, for a relay on the same host, none. ``Message-ID`` carries the idempotency key."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from html import escape

from pydantic import field_validator

from oneplan.alerts.channels.base import Channel, Message, Options, in_thread
from oneplan.errors import DeliveryFailed


class EmailOptions(Options):
    host: str
    port: int = 587
    security: str = "starttls"  # "starttls" | "tls" | "none"
    username: str | None = None
    password: str | None = None
    sender: str
    to: list[str]
    verify: bool = True  # check the server's certificate
    ca_file: str | None = None  # a private CA (or the server's own certificate) to trust

    @field_validator("security")
    @classmethod
    def _security(cls, value: str) -> str:
        if value not in ("starttls", "tls", "none"):
            raise ValueError('must be "starttls", "tls" or "none"')
        return value


def build(options: EmailOptions, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = options.sender
    mail["To"] = ", ".join(options.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = f"<{message.id}@oneplan>"
    mail.set_content(message.text)
    html = message.payload.get("html") or f"<p>{escape(message.text).replace(chr(10), '<br>')}</p>"
    mail.add_alternative(str(html), subtype="html")
    return mail


def _send(options: EmailOptions, mail: EmailMessage, timeout: float) -> None:
    context = ssl.create_default_context(cafile=options.ca_file)
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    smtp: smtplib.SMTP
    if options.security == "tls":
        smtp = smtplib.SMTP_SSL(options.host, options.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(options.host, options.port, timeout=timeout)
    with smtp:
        if options.security == "starttls":
            smtp.starttls(context=context)
        if options.username:
            smtp.login(options.username, options.password or "")
        smtp.send_message(mail)


class Email(Channel):
    kind = "email"
    Options = EmailOptions
    secret_fields = ("password",)

    async def send(self, message: Message) -> None:
        options: EmailOptions = self.options  # type: ignore[assignment]
        try:
            await in_thread(_send, options, build(options, message), message.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"SMTP {options.host}:{options.port}: {type(exc).__name__}: {exc}") from None
