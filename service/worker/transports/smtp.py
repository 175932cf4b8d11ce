"""E-mail over SMTP (aiosmtplib): a real MIME message from the e-mail channel's payload, over one reused
connection.

The message: ``From`` (with its display name), ``To``, ``Reply-To``, ``Subject``, ``Date``, a ``Message-ID``
made from the idempotency key (a resend carries the same one, so it is recognisable), the RFC 8058
``List-Unsubscribe`` / ``List-Unsubscribe-Post`` headers when the payload carries them, and a
multipart/alternative body: a text part always (derived from the HTML when the payload has none) and the
HTML part.

Outcomes: the server took the message (250) → accepted, the provider id being the Message-ID; a 4xx reply,
a timeout or a lost connection → transient; a recipient refused with 550/551/553 or an enhanced status
5.1.x (bad address) or 5.2.1 (mailbox disabled) → permanent unreachable; any other 5xx → permanent.

Options: ``host`` (required), ``port`` (default 465 with ``tls``, else 587 with ``starttls``, else 25),
``username`` / ``password``, ``tls`` (implicit TLS), ``starttls`` (true: required; false: never; absent:
when offered), ``validate_certs`` (default true), ``ca_file`` (a PEM bundle of the CAs to trust instead of
the system's), ``timeout`` (seconds, default 30), ``envelope_from``
(bounce address; default the From address), ``message_id_domain`` (default the From domain),
``local_hostname``, ``max_message_bytes`` (default 10 MiB).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from html.parser import HTMLParser
from typing import Any

import aiosmtplib

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret, redact

log = logging.getLogger(__name__)

SMTP_POLICY = policy.SMTP  # CRLF line endings, RFC 5322 header folding
ONE_CLICK = "List-Unsubscribe=One-Click"
#: SMTP reply codes that, on RCPT, say the address itself is dead (without an enhanced status code)
UNREACHABLE_REPLIES = frozenset({550, 551, 553})
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "table", "ul", "ol",
                     "blockquote", "section", "article", "header", "footer"})
_HIDDEN = frozenset({"script", "style", "head", "title"})


class _TextOfHtml(HTMLParser):
    """Collects the readable text of an HTML part: blocks on their own lines, links as ``text (url)``;
    scripts, styles and hidden divs (the inbox preheader) left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.links: list[str | None] = []
        self.divs: list[bool] = []  # per open div: whether it is hidden

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
        if tag == "div":
            style = (dict(attrs).get("style") or "").replace(" ", "").lower()
            self.divs.append("display:none" in style)
            self.hidden += self.divs[-1]
        if tag in _BLOCKS:
            self.out.append("\n- " if tag == "li" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith("#") and not self.hidden:
                self.out.append(f" ({href})")
        elif tag == "div" and self.divs:
            self.hidden = max(0, self.hidden - self.divs.pop())
        if tag in _BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A plain-text part from HTML: entities decoded, scripts and styles dropped, links kept as
    ``text (url)``, one block per line."""
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).splitlines())
    return "\n".join(line for line in lines if line)


class MessageError(ValueError):
    """The payload cannot become a safe e-mail (a missing field, a line break in a header …)."""


def _one_line(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MessageError(f"the {name} is missing")
    if len(f"{value}x".splitlines()) > 1:
        raise MessageError(f"the {name} contains a line break: refusing a header injection")
    return value.strip()


_HEADERS = HeaderRegistry()


def _address(name: str, value: str) -> Address:
    """The single address of a header value (``Name <a@b>``, ``=?utf-8?…?= <a@b>`` or ``a@b``)."""
    try:
        header = _HEADERS("From", value)
        addresses = header.addresses  # type: ignore[attr-defined]  # an AddressHeader
    except (ValueError, IndexError, AttributeError) as exc:
        raise MessageError(f"the {name} {value!r} is not an e-mail address: {exc}") from None
    if header.defects or len(addresses) != 1:
        raise MessageError(f"the {name} {value!r} is not one valid e-mail address")
    address = addresses[0]
    if not address.username or "." not in address.domain:
        raise MessageError(f"the {name} {value!r} is not one valid e-mail address")
    return address


class SmtpTransport:
    """Sends e-mail payloads over one SMTP connection (opened on the first send, reused, reopened after a
    failure); sends are serialised on it."""

    kind = "smtp"

    def __init__(self, options: Options):
        self.host: str = options.text("host")
        self.tls = options.flag("tls", False)
        starttls = options.raw("starttls", None)
        if starttls is not None and not isinstance(starttls, bool):
            raise options.error("starttls", f"must be true or false, not {type(starttls).__name__}")
        if self.tls and starttls:
            raise options.error("starttls", "cannot be combined with tls (implicit TLS)")
        self.starttls: bool | None = False if self.tls else starttls
        self.port = options.whole("port", 465 if self.tls else 587 if starttls else 25, minimum=1, maximum=65535)
        self.username: str | None = options.text("username", None)
        self.password: Secret | None = options.secret("password", None)
        if (self.username is None) != (self.password is None):
            raise options.error("password" if self.username else "username", "username and password go together")
        self.validate_certs = options.flag("validate_certs", True)
        self.ca_file: str | None = options.text("ca_file", None)
        self.timeout = options.number("timeout", 30.0, minimum=0.1, maximum=600)
        envelope = options.text("envelope_from", None)
        self.envelope_from: str | None = _address_option(options, "envelope_from", envelope)
        self.message_id_domain: str | None = options.text("message_id_domain", None)
        if self.message_id_domain is not None and not re.fullmatch(r"[A-Za-z0-9.-]+", self.message_id_domain):
            raise options.error("message_id_domain", "must be a domain name")
        self.local_hostname: str | None = options.text("local_hostname", None)
        self.max_message_bytes = options.whole("max_message_bytes", 10 * 1024 * 1024, minimum=1024,
                                               maximum=100 * 1024 * 1024)
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (f"SmtpTransport(host={self.host!r}, port={self.port}, tls={self.tls}, starttls={self.starttls}, "
                f"username={self.username!r})")

    # --- the message --------------------------------------------------------------------------------------

    def message(self, request: SendRequest, *, now: datetime | None = None) -> tuple[EmailMessage, str, str, str]:
        """The MIME message of a payload, its envelope sender and recipient and its Message-ID;
        :class:`MessageError` when the payload cannot make a safe e-mail."""
        body = request.body
        sender = _address("From address", _one_line("From address", body.get("from")))
        to = _address("recipient", _one_line("recipient", request.to))
        subject = _one_line("subject", body.get("subject"))
        html, text = body.get("html"), body.get("text")
        html = html if isinstance(html, str) and html.strip() else None
        text = text if isinstance(text, str) and text.strip() else None
        if html is None and text is None:
            raise MessageError("the payload has neither an html nor a text part")
        domain = self.message_id_domain or sender.domain
        message_id = f"<{_KEY_CHARS.sub('-', request.idempotency_key)[:128]}@{domain}>"
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = sender
        msg["To"] = to
        if body.get("reply_to"):
            msg["Reply-To"] = _address("Reply-To address", _one_line("Reply-To address", body["reply_to"]))
        msg["Subject"] = subject
        msg["Date"] = format_datetime(now or datetime.now(UTC))
        msg["Message-ID"] = message_id
        headers = body.get("headers")
        if isinstance(headers, Mapping):
            unsubscribe = headers.get("List-Unsubscribe")
            if unsubscribe:
                value = _one_line("List-Unsubscribe header", unsubscribe)
                links = re.findall(r"<([^<>\s]+)>", value)
                if not links or not all(link.startswith(("https://", "mailto:")) for link in links):
                    raise MessageError("the List-Unsubscribe header must hold <https://…> or <mailto:…> links")
                msg["List-Unsubscribe"] = ", ".join(f"<{link}>" for link in links)
                if headers.get("List-Unsubscribe-Post") == ONE_CLICK and any(link.startswith("https://")
                                                                             for link in links):
                    msg["List-Unsubscribe-Post"] = ONE_CLICK  # RFC 8058: only with an https URI
        msg.set_content(text if text is not None else html_to_text(html or ""), subtype="plain", charset="utf-8")
        if html is not None:
            msg.add_alternative(html, subtype="html", charset="utf-8")
        return msg, self.envelope_from or sender.addr_spec, to.addr_spec, message_id

    # --- the connection -----------------------------------------------------------------------------------

    def _lock_for_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop, self._smtp = asyncio.Lock(), loop, None  # a connection from another loop is dead
        return self._lock

    async def _connection(self) -> tuple[aiosmtplib.SMTP, bool]:
        """The open connection (and whether it was reused), connecting (and logging in) when needed."""
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp, True
        self._drop()
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls, start_tls=self.starttls,
                               validate_certs=self.validate_certs, cert_bundle=self.ca_file, timeout=self.timeout,
                               local_hostname=self.local_hostname, username=self.username,
                               password=self.password.reveal() if self.password else None)
        try:
            await smtp.connect()  # and EHLO, STARTTLS, AUTH as configured
        except BaseException:
            smtp.close()  # a half-open connection (refused login, failed STARTTLS …) is not kept
            raise
        self._smtp = smtp
        return smtp, False

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def deliver(self, request: SendRequest) -> SendResult:
        """Send the e-mail payload to ``request.to``; see the module docstring for the outcomes."""
        try:
            msg, envelope_from, recipient, message_id = self.message(request)
        except MessageError as exc:
            return SendResult.permanent(f"smtp: {exc}")
        size = len(msg.as_bytes())
        if size > self.max_message_bytes:
            return SendResult.permanent(f"smtp: the message is {size} bytes; at most {self.max_message_bytes}")
        async with self._lock_for_loop():
            for attempt in range(2):
                reused = False
                try:
                    smtp, reused = await self._connection()
                    await smtp.send_message(msg, sender=envelope_from, recipients=[recipient])
                    log.debug("smtp: %s accepted %s", self.host, message_id)
                    return SendResult.accepted(message_id)
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    refused = exc.recipients[0]
                    if refused.code == 421:
                        self._drop()  # the server is closing the session
                    return self._refused(refused.code, refused.message, recipient=True)
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code == 421 or isinstance(exc, (aiosmtplib.SMTPAuthenticationError,
                                                           aiosmtplib.SMTPHeloError)):
                        self._drop()
                    return self._refused(exc.code, exc.message, recipient=False,
                                         auth=isinstance(exc, aiosmtplib.SMTPAuthenticationError))
                except aiosmtplib.SMTPNotSupported as exc:
                    return SendResult.permanent(self._safe(f"smtp: {exc}"))
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    self._drop()
                    if reused and attempt == 0:
                        continue  # the server closed an idle connection: reconnect once
                    return SendResult.transient(self._safe(f"smtp: connection lost: {type(exc).__name__}: {exc}"))
                except (aiosmtplib.SMTPException, TimeoutError, OSError) as exc:
                    self._drop()
                    return SendResult.transient(self._safe(f"smtp: {type(exc).__name__}: {exc}"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _safe(self, text: str) -> str:
        return redact(text, [self.password])[:500]

    def _refused(self, code: int, message: str, *, recipient: bool, auth: bool = False) -> SendResult:
        """The result of an SMTP error reply."""
        reason = self._safe(f"smtp: {'recipient refused: ' if recipient else ''}{code} {message}".strip())
        if auth and code >= 500:
            return SendResult.permanent(f"{reason} (the SMTP username and password were refused)")
        if 400 <= code < 500:
            return SendResult.transient(reason)
        if 500 <= code < 600:
            enhanced = _ENHANCED.match(message or "")
            if recipient and enhanced is not None:
                dead = enhanced.group(2) == "1" or (enhanced.group(2), enhanced.group(3)) == ("2", "1")
            else:
                dead = recipient and code in UNREACHABLE_REPLIES
            return SendResult.permanent(reason, unreachable=dead)
        return SendResult.transient(reason)  # an unexpected reply: the outcome is unknown

    async def aclose(self) -> None:
        """Say QUIT and close the connection (if one is open)."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, RuntimeError):
            pass
        finally:
            smtp.close()


def _address_option(options: Options, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return _address(key, value).addr_spec
    except MessageError as exc:
        raise options.error(key, str(exc)) from None
