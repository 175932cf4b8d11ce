"""build_transport: the settings mapping → a transport of the right kind, or an error naming the field;
secrets never in errors or reprs; other kinds plug into KINDS."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.contracts import SendRequest, SendResult, Transport
from service.worker.transports.config import Options, TransportConfigError
from service.worker.transports.factory import KINDS, build_transport
from service.worker.transports.fcm import FcmTransport
from service.worker.transports.line import LineTransport
from service.worker.transports.smtp import SmtpTransport
from service.worker.transports.twilio import TwilioTransport
from service.worker.transports.viber import ViberTransport
from service.worker.transports.wechat import WeChatTransport
from service.worker.transports.whatsapp import WhatsAppTransport

SID = "AC" + "0" * 32


def pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


RSA_PEM = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
ACCOUNT = {"type": "service_account", "project_id": "p1", "private_key": RSA_PEM,
           "client_email": "herald@p1.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"}

VALID: dict[str, tuple[dict[str, Any], type]] = {
    "email": ({"kind": "smtp", "host": "smtp.example.com", "starttls": True, "username": "u", "password": "pw-secret"},
              SmtpTransport),
    "sms": ({"kind": "twilio", "account_sid": SID, "auth_token": "tok-secret"}, TwilioTransport),
    "push": ({"kind": "fcm", "service_account": ACCOUNT}, FcmTransport),
    "line": ({"kind": "line", "channel_access_token": "line-secret"}, LineTransport),
    "viber": ({"kind": "viber", "auth_token": "viber-secret"}, ViberTransport),
    "wechat": ({"kind": "wechat", "appid": "wx1", "secret": "wechat-secret"}, WeChatTransport),
    "whatsapp": ({"kind": "whatsapp", "access_token": "wa-secret", "phone_number_id": 1065403522}, WhatsAppTransport),
}


@pytest.mark.parametrize("channel", sorted(VALID))
def test_each_kind_builds_its_transport(channel):
    config, cls = VALID[channel]
    transport = build_transport(channel, config)
    assert type(transport) is cls and isinstance(transport, Transport)
    for value in config.values():
        if isinstance(value, str) and ("secret" in value or "PRIVATE KEY" in value):
            assert value not in repr(transport)


def test_defaults():
    smtp = build_transport("email", VALID["email"][0])
    assert isinstance(smtp, SmtpTransport) and smtp.port == 587 and smtp.starttls is True
    implicit = build_transport("email", {"kind": "smtp", "host": "h", "tls": True})
    assert isinstance(implicit, SmtpTransport) and implicit.port == 465 and implicit.starttls is False
    fcm = build_transport("push", VALID["push"][0])
    assert isinstance(fcm, FcmTransport) and fcm.project_id == "p1" and fcm.base_url == "https://fcm.googleapis.com"
    assert fcm.url == "https://fcm.googleapis.com/v1/projects/p1/messages:send"
    wa = build_transport("whatsapp", VALID["whatsapp"][0])
    assert isinstance(wa, WhatsAppTransport) and wa.url == "https://graph.facebook.com/v21.0/1065403522/messages"


def test_the_service_account_may_be_its_json_text():
    import json

    fcm = build_transport("push", {"kind": "fcm", "service_account": json.dumps(ACCOUNT), "project_id": "p2"})
    assert isinstance(fcm, FcmTransport) and fcm.project_id == "p2"


def test_env_references_are_read_from_the_environment():
    config = {"kind": "twilio", "account_sid": SID, "auth_token": "$env:TWILIO_TOKEN"}
    transport = build_transport("sms", config, env={"TWILIO_TOKEN": "from-env"})
    assert isinstance(transport, TwilioTransport) and transport.auth_token.reveal() == "from-env"
    with pytest.raises(TransportConfigError) as err:
        build_transport("sms", config, env={})
    assert str(err.value) == "transports.sms.auth_token: environment variable TWILIO_TOKEN is not set"


@pytest.mark.parametrize(("channel", "config", "path", "message"), [
    ("sms", {"kind": "twilio", "auth_token": "tok-secret"}, "transports.sms.account_sid", "required"),
    ("sms", {"kind": "twilio", "account_sid": "nope", "auth_token": "tok-secret"}, "transports.sms.account_sid",
     "must be AC followed by 32 hexadecimal digits"),
    ("sms", {"kind": "twilio", "account_sid": SID}, "transports.sms.auth_token", "required"),
    ("sms", {"kind": "twilio", "account_sid": SID, "auth_token": "tok-secret", "acount": 1}, "transports.sms.acount",
     "unknown option"),
    ("sms", {"kind": "twilio", "account_sid": SID, "auth_token": "tok-secret", "base_url": "ftp://x"},
     "transports.sms.base_url", "http(s) URL"),
    ("sms", {"kind": "twilio", "account_sid": SID, "auth_token": "tok-secret", "timeout": 0},
     "transports.sms.timeout", "between"),
    ("sms", {"kind": "twilio", "account_sid": SID, "auth_token": ["tok-secret"]}, "transports.sms.auth_token",
     "must be a non-empty text, not list"),
    ("email", {"kind": "smtp"}, "transports.email.host", "required"),
    ("email", {"kind": "smtp", "host": "h", "tls": True, "starttls": True}, "transports.email.starttls",
     "cannot be combined with tls"),
    ("email", {"kind": "smtp", "host": "h", "username": "u"}, "transports.email.password", "go together"),
    ("email", {"kind": "smtp", "host": "h", "port": 70000}, "transports.email.port", "between 1 and 65535"),
    ("email", {"kind": "smtp", "host": "h", "envelope_from": "not an address"}, "transports.email.envelope_from",
     "e-mail address"),
    ("push", {"kind": "fcm"}, "transports.push.service_account", "required"),
    ("push", {"kind": "fcm", "service_account": "{not json"}, "transports.push.service_account", "not JSON"),
    ("push", {"kind": "fcm", "service_account": {**ACCOUNT, "client_email": None}},
     "transports.push.service_account.client_email", "required"),
    ("push", {"kind": "fcm", "service_account": {**ACCOUNT, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"}},
     "transports.push.service_account.private_key", "not an unencrypted PEM private key"),
    ("push", {"kind": "fcm", "service_account": {**ACCOUNT, "private_key": pem(ec.generate_private_key(ec.SECP256R1()))}},
     "transports.push.service_account.private_key", "must be an RSA key"),
    ("push", {"kind": "fcm", "service_account": {k: v for k, v in ACCOUNT.items() if k != "project_id"}},
     "transports.push.project_id", "required"),
    ("whatsapp", {"kind": "whatsapp", "access_token": "wa-secret", "phone_number_id": "12a"},
     "transports.whatsapp.phone_number_id", "numeric id"),
    ("whatsapp", {"kind": "whatsapp", "access_token": "wa-secret", "phone_number_id": "1", "api_version": "21"},
     "transports.whatsapp.api_version", "v21.0"),
    ("wechat", {"kind": "wechat", "appid": "wx1", "secret": ""}, "transports.wechat.secret", "an empty text"),
    ("line", {"kind": "line", "channel_access_token": "a\nb"}, "transports.line.channel_access_token",
     "single line"),
])
def test_bad_settings_name_the_field_and_never_the_secret(channel, config, path, message):
    with pytest.raises(TransportConfigError) as err:
        build_transport(channel, config)
    assert err.value.path == path and message in err.value.message, str(err.value)
    assert str(err.value).startswith(f"{path}: ")
    for secret in ("tok-secret", "wa-secret", "BEGIN PRIVATE KEY", "a\nb"):
        assert secret not in str(err.value)


@pytest.mark.parametrize(("config", "message"), [
    ({}, "transports.sms.kind: required (one of: fcm, line, smpp, smtp, twilio, viber, wechat, whatsapp)"),
    ({"kind": "carrier-pigeon"}, "transports.sms.kind: unknown transport kind 'carrier-pigeon' "
                                 "(known kinds: fcm, line, smpp, smtp, twilio, viber, wechat, whatsapp)"),
    ("twilio", "transports.sms: must be a mapping with a 'kind', not str"),
])
def test_the_kind_is_required_and_known(config, message):
    with pytest.raises(TransportConfigError) as err:
        build_transport("sms", config)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_another_kind_plugs_in(monkeypatch):
    class Outbox:
        def __init__(self, options: Options):
            self.folder = options.text("folder")

        async def deliver(self, request: SendRequest) -> SendResult:
            return SendResult.accepted("logged")

    monkeypatch.setitem(KINDS, "log", Outbox)
    transport = build_transport("sms", {"kind": "log", "folder": "/tmp/outbox"})
    assert isinstance(transport, Outbox) and transport.folder == "/tmp/outbox"
    with pytest.raises(TransportConfigError, match=r"transports\.sms\.extra: unknown option \(this kind knows: folder\)"):
        build_transport("sms", {"kind": "log", "folder": "/tmp/outbox", "extra": 1})
