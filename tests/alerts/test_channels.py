"""Each channel's body in its service's documented format, against real receivers: Slack,
Feishu (signed), DingTalk (signed URL), WeCom, SMS templates, and email over STARTTLS and
implicit TLS to a real SMTP server (aiosmtpd) whose certificate the channel verifies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from oneplan.alerts import channels
from oneplan.errors import ConfigError, DeliveryFailed
from tests.alerts.receivers import HttpReceiver, _Mailbox
from tests.support.gateway import free_socket

PAYLOAD = {"event": "quota.threshold", "title": "oneplan: alice has used 80 %", "text": "8 / 10 used.", "used": 8}


def send(kind: str, options: dict[str, object]) -> None:
    channel = channels.build("c", kind, options, "alerts.channels.c")
    asyncio.run(channel.send(channels.Message("dlv_1", PAYLOAD, 5)))


def test_slack_body() -> None:
    with HttpReceiver(reply={}) as r:
        send("slack", {"url": r.url + "/services/T/B/X"})
    body = r.requests[0].json
    assert body["text"].startswith("oneplan: alice has used 80 %")
    assert body["blocks"][0]["type"] == "header" and body["blocks"][1]["text"]["type"] == "mrkdwn"


def test_feishu_body_is_signed_as_feishu_verifies() -> None:
    with HttpReceiver(reply={"code": 0, "msg": "success"}) as r:
        send("feishu", {"url": r.url + "/open-apis/bot/v2/hook/abc", "secret": "fs-secret"})
    body = r.requests[0].json
    assert body["msg_type"] == "text" and "8 / 10 used." in body["content"]["text"]
    ts = body["timestamp"]
    assert abs(int(ts) - time.time()) < 60
    expected = base64.b64encode(hmac.new(f"{ts}\nfs-secret".encode(), b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == expected


def test_feishu_error_code_in_a_200_is_a_failure() -> None:
    with HttpReceiver(reply={"code": 19021, "msg": "sign match fail"}) as r:
        with pytest.raises(DeliveryFailed, match="19021"):
            send("feishu", {"url": r.url + "/hook"})


def test_dingtalk_markdown_with_signed_url() -> None:
    with HttpReceiver(reply={"errcode": 0, "errmsg": "ok"}) as r:
        send("dingtalk", {"url": r.url + "/robot/send?access_token=tok", "secret": "SECdt"})
    got = r.requests[0]
    assert got.json["msgtype"] == "markdown" and got.json["markdown"]["title"] == PAYLOAD["title"]
    assert got.query["access_token"] == "tok"
    ts = got.query["timestamp"]
    digest = hmac.new(b"SECdt", f"{ts}\nSECdt".encode(), hashlib.sha256).digest()
    assert got.query["sign"] == base64.b64encode(digest).decode()  # the query string, decoded
    with HttpReceiver(reply={"errcode": 310000, "errmsg": "keywords not in content"}) as r:
        with pytest.raises(DeliveryFailed, match="310000"):
            send("dingtalk", {"url": r.url + "/robot/send?access_token=tok"})


def test_wecom_markdown() -> None:
    with HttpReceiver(reply={"errcode": 0, "errmsg": "ok"}) as r:
        send("wecom", {"url": r.url + "/cgi-bin/webhook/send?key=k1"})
    got = r.requests[0]
    assert got.query == {"key": "k1"}
    assert got.json["msgtype"] == "markdown" and got.json["markdown"]["content"].startswith("**oneplan: alice")


def test_sms_form_template_and_secrets_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEPLAN_TEST_SMS_KEY", "k-123")
    with HttpReceiver() as r:
        send("sms", {
            "url": r.url + "/sms", "to": ["+1555", "+1666"], "content_type": "application/x-www-form-urlencoded",
            "template": "to={to}&body={text}", "headers": {"x-api-key": "env:ONEPLAN_TEST_SMS_KEY"},
        })
    assert [urllib.parse.parse_qs(q.body.decode())["to"] for q in r.requests] == [["+1555"], ["+1666"]]
    assert urllib.parse.parse_qs(r.requests[0].body.decode())["body"] == ["oneplan: alice has used 80 %: 8 / 10 used."]
    assert r.requests[0].headers["X-Api-Key"] == "k-123"
    monkeypatch.delenv("ONEPLAN_TEST_SMS_KEY")
    with pytest.raises(ConfigError, match="ONEPLAN_TEST_SMS_KEY is not set"):
        send("sms", {"url": "http://127.0.0.1:9", "to": ["1"], "headers": {"x-api-key": "env:ONEPLAN_TEST_SMS_KEY"}})


def test_a_refused_connection_is_a_delivery_failure() -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(DeliveryFailed):
        send("webhook", {"url": f"http://127.0.0.1:{port}/x"})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_starttls_and_tls(certificate: tuple[Path, Path], security: str) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    mailbox = _Mailbox()
    tls = {"tls_context": context, "require_starttls": True} if security == "starttls" else {"ssl_context": context}
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **tls)
    controller.start()
    try:
        options = {"host": "127.0.0.1", "port": port, "security": security, "sender": "a@x.test",
                   "to": ["b@x.test", "c@x.test"], "ca_file": str(cert)}
        send("email", options)
        with pytest.raises(DeliveryFailed, match="SMTP"):  # an unknown certificate is refused
            send("email", {**options, "ca_file": None})
    finally:
        controller.stop()
    (mail,) = mailbox.messages
    assert mail["To"] == "b@x.test, c@x.test" and mail["Message-ID"] == "<dlv_1@oneplan>"
    assert mail.get_body(("plain",)).get_content().strip() == "8 / 10 used."
    assert "8 / 10 used." in mail.get_body(("html",)).get_content()
