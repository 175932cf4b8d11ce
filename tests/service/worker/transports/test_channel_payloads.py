"""End to end from the built-in channels: each channel renders its sample creative for a customer, its
``send`` goes through ``engine.transport_send`` to the transport, and the local peer receives exactly the
rendered payload, in the provider's format."""

from __future__ import annotations

import email
import json
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from werkzeug import Request, Response

from engine import Creative, Customer, SendContext
from engine.testing import DEFAULT_SENDERS, FULL_CONTACT
from service.worker.transports.factory import build_transport
from tests.plugins.channels.common import context, message

from .conftest import free_port
from .test_fcm import OK as FCM_OK
from .test_fcm import SEND as FCM_SEND
from .test_fcm import TokenEndpoint, keypair  # noqa: F401  (keypair: a fixture)
from .test_smtp import Recorder

ANA = Customer("ana", dict(FULL_CONTACT))
def send_context(transport: Any) -> SendContext:
    return SendContext("summer-sale", "run-1", "ana", transport=transport)


def rendered(registry, channel_name: str) -> tuple[Any, dict[str, Any]]:
    channel = registry.channel(channel_name)
    creative = Creative(channel_name, "default", dict(channel.sample_creatives()[0]))
    payload = dict(channel.render(creative, context(channel, message(creative, senders=DEFAULT_SENDERS), ANA)))
    return channel, payload


class Recording:
    """A handler recording requests and answering one fixed response."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}
        self.requests: list[Request] = []

    def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        return Response(json.dumps(self.body), self.status, headers=self.headers, content_type="application/json")


@pytest.mark.asyncio
async def test_email(registry):
    channel, payload = rendered(registry, "email")
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        transport = build_transport("email", {"kind": "smtp", "host": "127.0.0.1", "port": controller.port,
                                              "starttls": False})
        ctx = send_context(transport)
        result = await channel.send(payload, ctx)
        await transport.aclose()
    finally:
        controller.stop()
    assert result.ok and result.provider_id == f"<{ctx.idempotency_key}@herald.example>"
    [(mail_from, rcpt, raw)] = handler.received
    assert mail_from == "offers@herald.example" and rcpt == [FULL_CONTACT["email"]]
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert msg["From"].addresses[0].display_name == "Herald" and str(msg["Reply-To"]) == "care@herald.example"
    assert str(msg["Subject"]) == payload["subject"]
    assert str(msg["List-Unsubscribe"]).strip() == payload["headers"]["List-Unsubscribe"]
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    text, html = msg.iter_parts()
    assert text.get_content().replace("\r\n", "\n").strip() == payload["text"].strip()
    assert html.get_content().replace("\r\n", "\n").strip() == payload["html"].strip()


@pytest.mark.asyncio
async def test_sms(registry, httpserver):
    channel, payload = rendered(registry, "sms")
    sid = "AC" + "0" * 32
    handler = Recording(201, {"sid": "SM" + "1" * 32, "status": "queued"})
    httpserver.expect_request(f"/2010-04-01/Accounts/{sid}/Messages.json").respond_with_handler(handler)
    transport = build_transport("sms", {"kind": "twilio", "account_sid": sid, "auth_token": "t0ken",
                                        "base_url": httpserver.url_for("/")})
    ctx = send_context(transport)
    result = await channel.send(payload, ctx)
    await transport.aclose()
    assert result.ok
    form = handler.requests[0].form
    assert form["To"] == payload["to"] == "+14155550123" and form["From"] == "HERALD" and form["Body"] == payload["text"]
    assert handler.requests[0].headers["I-Twilio-Idempotency-Token"] == ctx.idempotency_key


@pytest.mark.asyncio
async def test_push(registry, httpserver, keypair):  # noqa: F811
    channel, payload = rendered(registry, "push")
    pem, public = keypair
    tokens = TokenEndpoint(public, httpserver.url_for("/token"))
    httpserver.expect_request("/token").respond_with_handler(tokens)
    handler = Recording(*FCM_OK[:2])
    httpserver.expect_request(FCM_SEND).respond_with_handler(handler)
    transport = build_transport("push", {"kind": "fcm", "base_url": httpserver.url_for("/"), "service_account": {
        "project_id": "herald-demo", "private_key": pem, "client_email": "h@herald-demo.iam.gserviceaccount.com",
        "token_uri": httpserver.url_for("/token")}})
    result = await channel.send(payload, send_context(transport))
    await transport.aclose()
    assert result.ok and handler.requests[0].get_json() == payload
    assert payload["message"]["token"] == FULL_CONTACT["push_token"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("channel_name", "config", "path", "answer", "recipient_field"), [
    ("line", {"kind": "line", "channel_access_token": "tok"}, "/v2/bot/message/push",
     (200, {"sentMessages": [{"id": "1"}]}, {"x-line-request-id": "req-1"}), "to"),
    ("viber", {"kind": "viber", "auth_token": "tok"}, "/pa/send_message",
     (200, {"status": 0, "status_message": "ok", "message_token": 5741311803571721087}, {}), "receiver"),
    ("whatsapp", {"kind": "whatsapp", "access_token": "tok", "phone_number_id": "106540352242922"},
     "/v21.0/106540352242922/messages", (200, {"messages": [{"id": "wamid.1"}]}, {}), "to"),
])
async def test_json_providers(registry, httpserver, channel_name, config, path, answer, recipient_field):
    channel, payload = rendered(registry, channel_name)
    handler = Recording(*answer)
    httpserver.expect_request(path, method="POST").respond_with_handler(handler)
    transport = build_transport(channel_name, {**config, "base_url": httpserver.url_for("/")})
    result = await channel.send(payload, send_context(transport))
    await transport.aclose()
    assert result.ok, result.reason
    assert handler.requests[0].get_json() == payload and payload[recipient_field]


@pytest.mark.asyncio
async def test_wechat(registry, httpserver):
    channel, payload = rendered(registry, "wechat")
    httpserver.expect_request("/cgi-bin/token").respond_with_json({"access_token": "AT", "expires_in": 7200})
    handler = Recording(200, {"errcode": 0, "errmsg": "ok", "msgid": 200228332})
    httpserver.expect_request("/cgi-bin/message/template/send").respond_with_handler(handler)
    transport = build_transport("wechat", {"kind": "wechat", "appid": "wx1", "secret": "s",
                                           "base_url": httpserver.url_for("/")})
    result = await channel.send(payload, send_context(transport))
    await transport.aclose()
    assert result.ok and handler.requests[0].get_json() == payload
    assert payload["touser"] == FULL_CONTACT["wechat_openid"]
