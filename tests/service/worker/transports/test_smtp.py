"""The SMTP transport against a real aiosmtpd server on loopback: the MIME message as received, outcomes
per SMTP reply, the reused connection and reconnecting after the server went away."""

from __future__ import annotations

import asyncio
import datetime
import email
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage, MIMEPart
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from service.worker.transports.config import Options
from service.worker.transports.smtp import SmtpTransport, html_to_text

from .conftest import KEY, free_port, request

UNSUB = "https://herald.example/u?c=c1&m=m1&t=abcdefghijklmnopqrstuv"
PAYLOAD: dict[str, Any] = {
    "from": "=?utf-8?b?Wm/DqywgU2hvcCAiQmVzdCI=?= <shop@example.com>",  # formataddr(('Zoë, Shop "Best"', …))
    "to": "ana@example.org",
    "reply_to": "help@example.com",
    "subject": "Ana, 20% off — <today> only ☀",
    "html": "<p>Hello Ana &amp; co,</p><p>Use &lt;SUMMER&gt; <a href=\"https://shop.example/s\">here</a>.</p>"
            f"<p><a href=\"{UNSUB.replace('&', '&amp;')}\">Unsubscribe</a></p>",
    "text": f"Hello Ana & co,\nUse <SUMMER> here.\nUnsubscribe: {UNSUB}",
    "headers": {"List-Unsubscribe": f"<{UNSUB}>, <mailto:unsub@example.com?subject=unsubscribe>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
}


class Recorder:
    """An aiosmtpd handler: records envelopes and messages, refuses some recipients, counts connections."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.ehlos = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == "gone@example.org":
            return "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"
        if address == "nobody@example.org":
            return "553 mailbox name not allowed"
        if address == "spam@example.org":
            return "550 5.7.1 Message rejected as spam"
        if address == "full@example.org":
            return "552 5.2.2 Mailbox full"
        if address == "later@example.org":
            return "451 4.3.0 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok: queued as 4XYZ"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"herald" and auth_data.password == b"s3cret-pw"
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


@pytest.fixture
def smtpd() -> Iterator[tuple[Controller, Recorder]]:
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def transport(port: int, **options: Any) -> SmtpTransport:
    return SmtpTransport(Options({"host": "127.0.0.1", "port": port, "starttls": False, **options}, "transports.email"))


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default_policy)  # type: ignore[return-value]


def content(part: MIMEPart) -> str:
    return part.get_content().replace("\r\n", "\n")


@pytest.mark.asyncio
async def test_the_received_message_is_a_full_mime_email(smtpd):
    controller, handler = smtpd
    t = transport(controller.port, envelope_from="bounces@example.com")
    result = await t.deliver(request("email", "ana@example.org", PAYLOAD))
    await t.aclose()
    assert result.ok and result.provider_id == f"<{KEY}@example.com>"
    [(mail_from, rcpt, raw)] = handler.received
    assert mail_from == "bounces@example.com" and rcpt == ["ana@example.org"]
    msg = parsed(raw)
    assert msg["Message-ID"] == result.provider_id
    assert msg["From"].addresses[0].display_name == 'Zoë, Shop "Best"'
    assert msg["From"].addresses[0].addr_spec == "shop@example.com"
    assert str(msg["To"]) == "ana@example.org" and str(msg["Reply-To"]) == "help@example.com"
    assert str(msg["Subject"]) == PAYLOAD["subject"]
    assert msg["Date"].datetime is not None
    assert str(msg["List-Unsubscribe"]).strip() == f"<{UNSUB}>, <mailto:unsub@example.com?subject=unsubscribe>"
    assert f"<{UNSUB}>".encode() in raw  # the https link is readable as is, not an encoded word
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert content(text) == PAYLOAD["text"] + "\n"
    assert content(html) == PAYLOAD["html"] + "\n"
    assert "&lt;SUMMER&gt;" in html.get_content()  # the html's escaping is kept
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line endings only


@pytest.mark.asyncio
async def test_a_payload_without_text_gets_one_from_its_html(smtpd):
    controller, handler = smtpd
    t = transport(controller.port)
    body = {**PAYLOAD, "text": None,
            "html": '<div style="display:none;max-height:0;overflow:hidden">Preview</div>'
                    "<style>p{color:red}</style><p>Hi &amp; welcome</p><p>Shop <a href=\"https://s.example/x\">now</a>"
                    "</p><ul><li>one</li><li>two</li></ul>"}
    result = await t.deliver(request("email", "ana@example.org", body))
    await t.aclose()
    assert result.ok
    text, html = parsed(handler.received[0][2]).iter_parts()
    assert content(text) == "Hi & welcome\nShop now (https://s.example/x)\n- one\n- two\n"
    assert "Preview" in html.get_content()
    assert html_to_text("<script>alert(1)</script>a<br>b") == "a\nb"


@pytest.mark.asyncio
async def test_no_unsubscribe_headers_without_them_in_the_payload(smtpd):
    controller, handler = smtpd
    t = transport(controller.port, message_id_domain="mail.herald.example")
    body = {k: v for k, v in PAYLOAD.items() if k not in ("headers", "reply_to")}
    result = await t.deliver(request("email", "ana@example.org", body))
    await t.aclose()
    msg = parsed(handler.received[0][2])
    assert result.provider_id == f"<{KEY}@mail.herald.example>"
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None and msg["Reply-To"] is None


@pytest.mark.asyncio
async def test_a_resend_carries_the_same_message_id(smtpd):
    controller, handler = smtpd
    t = transport(controller.port)
    first = await t.deliver(request("email", "ana@example.org", PAYLOAD))
    again = await t.deliver(request("email", "ana@example.org", PAYLOAD))
    other = await t.deliver(request("email", "ana@example.org", PAYLOAD, key="f" * 32))
    await t.aclose()
    ids = [parsed(raw)["Message-ID"] for _, _, raw in handler.received]
    assert first.provider_id == again.provider_id == ids[0] == ids[1] != ids[2] == other.provider_id


@pytest.mark.asyncio
@pytest.mark.parametrize(("address", "outcome", "unreachable", "text"), [
    ("gone@example.org", "permanent", True, "5.1.1"),
    ("nobody@example.org", "permanent", True, "553"),
    ("spam@example.org", "permanent", False, "5.7.1"),
    ("full@example.org", "permanent", False, "5.2.2"),
    ("later@example.org", "transient", False, "451"),
])
async def test_refused_recipients(smtpd, address, outcome, unreachable, text):
    controller, handler = smtpd
    t = transport(controller.port)
    result = await t.deliver(request("email", address, PAYLOAD))
    assert (result.outcome, result.unreachable) == (outcome, unreachable)
    assert text in (result.reason or "") and "recipient refused" in (result.reason or "")
    # the connection is still usable for the next recipient
    assert (await t.deliver(request("email", "ana@example.org", PAYLOAD))).ok
    await t.aclose()
    assert handler.ehlos == 1 and len(handler.received) == 1


@pytest.mark.asyncio
async def test_one_connection_serves_many_sends_even_concurrent_ones(smtpd):
    controller, handler = smtpd
    t = transport(controller.port)
    results = await asyncio.gather(*[t.deliver(request("email", f"u{i}@example.org", PAYLOAD, key=f"{i:032x}"))
                                     for i in range(8)])
    await t.aclose()
    assert all(r.ok for r in results)
    assert handler.ehlos == 1
    assert sorted(rcpt[0] for _, rcpt, _ in handler.received) == sorted(f"u{i}@example.org" for i in range(8))


@pytest.mark.asyncio
async def test_reconnects_after_the_server_dropped_the_connection():
    handler = Recorder()
    port = free_port()
    first = Controller(handler, hostname="127.0.0.1", port=port)
    first.start()
    t = transport(port)
    assert (await t.deliver(request("email", "ana@example.org", PAYLOAD))).ok
    first.stop()  # the server goes away, closing the idle connection
    second = Controller(handler, hostname="127.0.0.1", port=port)
    second.start()
    try:
        result = await t.deliver(request("email", "bob@example.org", PAYLOAD))
        assert result.ok, result.reason
        assert handler.ehlos == 2 and [r[1] for r in handler.received] == [["ana@example.org"], ["bob@example.org"]]
    finally:
        await t.aclose()
        second.stop()


@pytest.mark.asyncio
async def test_no_server_is_a_transient_error(closed_port):
    t = transport(closed_port, timeout=2)
    result = await t.deliver(request("email", "ana@example.org", PAYLOAD))
    assert result.outcome == "transient" and "smtp" in (result.reason or "")


@pytest.mark.asyncio
async def test_a_server_that_never_greets_times_out_as_transient():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        t = transport(listener.getsockname()[1], timeout=0.5)
        result = await asyncio.wait_for(t.deliver(request("email", "ana@example.org", PAYLOAD)), 10)
        assert result.outcome == "transient" and "Timeout" in (result.reason or "")
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_login_with_good_and_bad_credentials():
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        good = transport(port, username="herald", password="s3cret-pw")
        assert (await good.deliver(request("email", "ana@example.org", PAYLOAD))).ok
        await good.aclose()
        bad = transport(port, username="herald", password="wrong-password")
        result = await bad.deliver(request("email", "ana@example.org", PAYLOAD))
        await bad.aclose()
        assert result.outcome == "permanent" and not result.unreachable
        assert "535" in (result.reason or "") and "wrong-password" not in (result.reason or "")
        assert "wrong-password" not in repr(bad) and len(handler.received) == 1
    finally:
        controller.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(("change", "why"), [
    ({"subject": "Hi\r\nBcc: victim@example.org"}, "line break"),
    ({"from": "Shop <shop@example.com>\nBcc: x@example.org"}, "line break"),
    ({"reply_to": "not an address"}, "Reply-To"),
    ({"from": "nobody"}, "From address"),
    ({"html": None, "text": None}, "neither an html nor a text part"),
    ({"headers": {"List-Unsubscribe": "<javascript:alert(1)>"}}, "List-Unsubscribe"),
])
async def test_unsafe_payloads_are_refused_before_connecting(closed_port, change, why):
    t = transport(closed_port)  # nothing listens: a refusal must come before any connection
    result = await t.deliver(request("email", "ana@example.org", {**PAYLOAD, **change}))
    assert result.outcome == "permanent" and why in (result.reason or "")


@pytest.mark.asyncio
async def test_an_oversized_message_is_refused(closed_port):
    t = transport(closed_port, max_message_bytes=4096)
    result = await t.deliver(request("email", "ana@example.org", {**PAYLOAD, "html": "<p>x</p>" * 2000}))
    assert result.outcome == "permanent" and "bytes" in (result.reason or "")


class ShutsDown(Recorder):
    """Answers DATA for one address with 421 (the server is closing the session)."""

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos == ["bye@example.org"]:
            return "421 4.3.2 Service shutting down"
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.asyncio
async def test_a_421_is_transient_and_the_next_send_opens_a_new_connection():
    handler = ShutsDown()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        t = transport(controller.port)
        result = await t.deliver(request("email", "bye@example.org", PAYLOAD))
        assert result.outcome == "transient" and "421" in (result.reason or "")
        assert (await t.deliver(request("email", "ana@example.org", PAYLOAD))).ok
        await t.aclose()
        assert handler.ehlos == 2 and len(handler.received) == 1
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[ssl.SSLContext, str]:
    """A self-signed certificate for 127.0.0.1: the server's TLS context and the CA file a client trusts."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


@pytest.mark.asyncio
async def test_starttls_with_a_trusted_certificate(certificate):
    context, ca_file = certificate
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True)
    controller.start()
    try:
        t = SmtpTransport(Options({"host": "127.0.0.1", "port": controller.port, "starttls": True,
                                   "ca_file": ca_file}, "transports.email"))
        result = await t.deliver(request("email", "ana@example.org", PAYLOAD))
        await t.aclose()
        assert result.ok, result.reason
        untrusted = SmtpTransport(Options({"host": "127.0.0.1", "port": controller.port, "starttls": True,
                                           "timeout": 5}, "transports.email"))
        refused = await untrusted.deliver(request("email", "bob@example.org", PAYLOAD))
        await untrusted.aclose()
        assert refused.outcome == "transient" and "CERTIFICATE_VERIFY_FAILED" in (refused.reason or "")
        assert [r[1] for r in handler.received] == [["ana@example.org"]]
    finally:
        controller.stop()


@pytest.mark.asyncio
async def test_implicit_tls(certificate):
    context, ca_file = certificate
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ssl_context=context)
    controller.start()
    try:
        t = SmtpTransport(Options({"host": "127.0.0.1", "port": controller.port, "tls": True, "ca_file": ca_file},
                                  "transports.email"))
        result = await t.deliver(request("email", "ana@example.org", PAYLOAD))
        await t.aclose()
        assert result.ok, result.reason
        assert len(handler.received) == 1
    finally:
        controller.stop()


@pytest.mark.asyncio
async def test_required_starttls_is_never_skipped(smtpd):
    controller, handler = smtpd  # a server that offers no STARTTLS
    t = SmtpTransport(Options({"host": "127.0.0.1", "port": controller.port, "starttls": True}, "transports.email"))
    result = await t.deliver(request("email", "ana@example.org", PAYLOAD))
    await t.aclose()
    assert result.outcome == "transient" and "STARTTLS" in (result.reason or "") and not handler.received
