"""E-mail: subject, sender, the unsubscribe tag, HTML with a text part, RFC 8058 one-click headers.

Settings (plugin ``plugins.channels.email``): ``cost`` (default 0.001), ``unsubscribe_base`` (an https URL),
``unsubscribe_secret`` (the org's HMAC key, at least 16 characters; write ``$env:NAME`` in the settings file),
``unsubscribe_mailto`` (optional address added to List-Unsubscribe), ``html_warn_bytes`` (default 100 KB:
Gmail clips larger messages).

Each recipient's unsubscribe link is ``<base>?c=<customer id>&m=<message id>&t=<token>``, the token an
HMAC-SHA256 of the two ids under the secret (:func:`verify_unsubscribe` checks it), so nobody can
unsubscribe someone else by editing the URL; List-Unsubscribe carries the same URL. Without a secret the
links say ``t=unsigned``: a preview works and says so (an ``unsubscribe_unsigned`` warning), a real run
drops the channel (``compliance``).

Rendering: ``html`` is autoescaped (customer values are HTML-escaped, the template's markup is kept). Every
rendered payload is checked (``compliance``): the html and text parts must contain the recipient's link,
and no header (subject, from, reply-to, to) may contain a line break — customer data cannot add headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as html_lib
import json
import re
from collections.abc import Mapping
from email.utils import formataddr
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from engine import (
    EMAIL_ADDRESS,
    ContactField,
    ContactReach,
    ContactReachability,
    Creative,
    Issue,
    Message,
    SendContext,
    SendResult,
    email_address,
    email_addresses,
    email_handle_type,
    fact_column,
    hookimpl,
    lazy,
    render_content,
    transport_send,
    unknown_keys,
    valid_emails,
)
from plugins.channels import setting_checks as setting

if TYPE_CHECKING:
    import polars as pl
else:  # imported when a frame is first used
    pl = lazy("polars")

email_validator = lazy("email_validator")  # imported on first use (start-up)

HTML_WARN_BYTES = 100 * 1024
SUBJECT_MAX = 255
_FIELDS = ("subject", "html", "text", "from", "reply_to", "sender_name", "preheader")
SECRET_MIN = 16
TOKEN_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
UNSIGNED = "unsigned"
_HEADERS = ("subject", "from", "reply_to", "to")


def unsubscribe_token(secret: str, customer_id: str, message_id: str) -> str:
    """The unsubscribe token of one recipient of one message: HMAC-SHA256 of the ids, truncated, URL-safe base64."""
    data = json.dumps([str(customer_id), str(message_id)]).encode()
    digest = hmac.new(secret.encode(), data, hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_unsubscribe(secret: str | None, customer_id: str, message_id: str, token: str) -> bool:
    """Whether ``token`` is the genuine token of (customer, message) under ``secret`` (constant-time compare);
    always False without a secret."""
    if not secret or not isinstance(token, str):
        return False
    return hmac.compare_digest(unsubscribe_token(secret, customer_id, message_id).encode(), token.encode())


def line_break(value: Any) -> bool:
    """Whether a header value holds a line break (CR, LF or any other character Python splits lines on)."""
    return isinstance(value, str) and len(f"{value}x".splitlines()) > 1


def html_to_text(markup: str) -> str:
    """A plain-text part from HTML: links kept as ``text (url)``, blocks on their own lines."""
    markup = re.sub(r"(?is)<(script|style|head).*?</\1>", "", markup)
    markup = re.sub(r"""(?is)<a\s[^>]*href=(["'])(.+?)\1[^>]*>(.*?)</a>""", r"\3 (\2)", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|h[1-6]|li|tr)>", "\n", markup)
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", markup))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def text_to_html(text: str) -> str:
    """A minimal HTML part from plain text: escaped, paragraphs on blank lines, line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    body = "".join(f"<p>{html_lib.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return f'<!DOCTYPE html><html><body>{body}</body></html>'


@lru_cache(maxsize=65536)
def normalized_email(value: str) -> str | None:
    """The normalised address when ``value`` is a syntactically valid e-mail address, else None."""
    try:
        return email_validator.validate_email(value, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        return None


def valid_email_column(column: pl.Expr) -> pl.Expr:
    """The column check of ``email``: an address the audience reader validated and normalised (it recorded
    ``handle_type.email``) is trusted; any other (a frame built otherwise) is checked by ``valid_emails``."""
    typed = fact_column("customer.handle_type.email", scalar_if_missing=True)
    return (pl.when(typed.is_not_null()).then(typed == EMAIL_ADDRESS)
            .otherwise(valid_emails(pl.when(typed.is_null()).then(column))))


# ``kinds``: an address the reader typed (validated and normalised) is trusted, as ``valid_email_column`` trusts it
_REACH = ContactReach("email", "email", valid=lambda v: normalized_email(v) is not None, valid_expr=valid_email_column,
                      kinds=(EMAIL_ADDRESS,),
                      rule="name@domain.tld: one @, no spaces, a domain name with a dot")


class Email(ContactReachability):
    """The e-mail channel: validation, reachability over ``email``, and an SMTP-ready payload."""

    name = "email"
    reach = _REACH
    kind = "direct"
    required_tags = ("unsubscribe_url",)
    required_tag_fields = ("html", "text")
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["subject"],
        "anyOf": [{"required": ["html"]}, {"required": ["text"]}],
        "properties": {
            "subject": {"type": "string", "minLength": 1, "maxLength": SUBJECT_MAX},
            "html": {"type": "string", "description": "Liquid HTML; a text part is generated when text is missing"},
            "text": {"type": "string", "description": "plain-text part; an HTML part is generated when html is missing"},
            "from": {"type": "string", "format": "email"},
            "reply_to": {"type": "string", "format": "email"},
            "sender_name": {"type": "string"},
            "preheader": {"type": "string"},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.001)
        base = settings.get("unsubscribe_base", "https://herald.example/u")
        parts = urlsplit(base) if isinstance(base, str) else None
        if parts is None or parts.scheme != "https" or not parts.netloc:
            raise setting.refuse("unsubscribe_base", "an https URL (RFC 8058)", base)
        self.unsubscribe_base = base.rstrip("/")
        secret = settings.get("unsubscribe_secret")
        if secret is not None and (not isinstance(secret, str) or len(secret) < SECRET_MIN):
            given = f"{len(secret)} characters" if isinstance(secret, str) else type(secret).__name__  # not the secret
            raise ValueError(f"unsubscribe_secret: must be a text of at least {SECRET_MIN} characters, not {given}")
        self.unsubscribe_secret: str | None = secret
        self.unsubscribe_mailto = setting.text(settings, "unsubscribe_mailto")
        self.html_warn_bytes = setting.whole(settings, "html_warn_bytes", HTML_WARN_BYTES)
        self.tags = {"unsubscribe_url": self.unsubscribe_url("preview", "preview")}

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"subject": "{{ customer.first_name | default: 'Friend' }}, 20% off this summer",
                 "html": "<p>Hello {{ customer.first_name | default: 'there' }},</p><p>20% off all summer.</p>"
                         "<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"},
                {"subject": "Summer sale", "text": "20% off all summer.\n\nUnsubscribe: {{ unsubscribe_url }}"}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Subject and a body part required; header fields single-line; addresses valid; a size warning."""
        content = creative.content
        issues = unknown_keys(content, _FIELDS, "e-mail")
        subject = content.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            issues.append(Issue("subject", "required", "the subject is required"))
        elif len(subject) > SUBJECT_MAX:
            issues.append(Issue("subject", "too_long", f"the subject has {len(subject)} characters; at most {SUBJECT_MAX}"))
        if not any(isinstance(content.get(k), str) and content[k].strip() for k in ("html", "text")):
            issues.append(Issue("html", "required", "an html or a text part is required"))
        senders = message.delivery.senders.get("email", {})
        for key in ("subject", "sender_name"):
            value = content.get(key) or (senders.get(key) if key == "sender_name" else None)
            if isinstance(value, str) and ("\n" in value or "\r" in value):
                issues.append(Issue(key, "header_newline", f"the {key} must be a single line"))
        for key in ("from", "reply_to"):
            address = content.get(key) or senders.get(key)
            if address is None:
                if key == "from":
                    issues.append(Issue("from", "required", "a from address is required (creative or delivery.senders.email)"))
                continue
            try:
                email_validator.validate_email(str(address), check_deliverability=False)
            except email_validator.EmailNotValidError as exc:
                issues.append(Issue(key, "invalid_email", f"the {key} address {address!r} is invalid: {exc}"))
        if self.unsubscribe_secret is None:
            issues.append(Issue("", "unsubscribe_unsigned", "no unsubscribe_secret is configured for the email "
                                "plugin: unsubscribe links are unsigned (t=unsigned); a preview works, a real send "
                                "is refused", "warning"))
        size = len(str(content.get("html", "")).encode())
        if size > self.html_warn_bytes:
            issues.append(Issue("html", "large_html", f"the html is {size // 1024} KB; Gmail clips messages above ~100 KB", "warning"))
        return issues


    def unsubscribe_url(self, message_id: str, customer_id: str) -> str:
        """The one-click unsubscribe URL of one recipient of one message, with its HMAC token."""
        token = (unsubscribe_token(self.unsubscribe_secret, customer_id, message_id)
                 if self.unsubscribe_secret else UNSIGNED)
        query = urlencode({"c": str(customer_id), "m": str(message_id), "t": token})
        return f"{self.unsubscribe_base}{'&' if '?' in self.unsubscribe_base else '?'}{query}"

    def verify_unsubscribe(self, customer_id: str, message_id: str, token: str) -> bool:
        """Whether an unsubscribe request's token is genuine for (customer, message) under this org's secret."""
        return verify_unsubscribe(self.unsubscribe_secret, customer_id, message_id, token)

    def check_unsubscribe(self, query: Mapping[str, Any]) -> tuple[str, str] | None:
        """The (customer id, message id) of an unsubscribe link's query (``c``, ``m``, ``t`` as
        :meth:`unsubscribe_url` writes them) when its token is genuine; None for a missing, unsigned or forged
        one (and always without an ``unsubscribe_secret``)."""
        values = [query.get(k) for k in ("c", "m", "t")]
        if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values):
            return None
        customer_id, message_id, token = values
        assert isinstance(customer_id, str) and isinstance(message_id, str) and isinstance(token, str)
        if token == UNSIGNED or not self.verify_unsubscribe(customer_id, message_id, token):
            return None
        return customer_id, message_id

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the e-mail to ``payload["to"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("to"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """An e-mail request: from, to, reply_to, subject, html and text parts, and the RFC 8058 headers.

        ``html`` is rendered with autoescape (customer values escaped, the template's markup kept)."""
        unsubscribe = self.unsubscribe_url(context.get("message", {}).get("id", ""), context["customer"]["id"])
        content = render_content(dict(creative.content), {**context, "unsubscribe_url": unsubscribe}, html=("html",))
        defaults = context.get("delivery", {}).get("sender", {})
        address = content.get("from") or defaults.get("from")
        name = content.get("sender_name") or defaults.get("sender_name")
        html, text = content.get("html"), content.get("text")
        if html and content.get("preheader"):
            hidden = f'<div style="display:none;max-height:0;overflow:hidden">{html_lib.escape(content["preheader"])}</div>'
            html = hidden + html
        links = [f"<{unsubscribe}>"]
        if self.unsubscribe_mailto:
            links.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
        return {
            "from": _from_header(name, address),
            "to": context["customer"].get("email"),
            "reply_to": content.get("reply_to") or defaults.get("reply_to"),
            "subject": content["subject"],
            "html": html or text_to_html(text or ""),
            "text": text or html_to_text(html or ""),
            "headers": {"List-Unsubscribe": ", ".join(links), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        }

    def compliance(self, payload: Mapping[str, Any], context: Mapping[str, Any], *, preview: bool = True) -> list[Issue]:
        """What the rendered e-mail breaks: a header with a line break (``header_injection``), an html or text
        part without the recipient's unsubscribe link (``compliance``), an unsigned link on a real send."""
        issues = [Issue(key, "header_injection", f"the rendered {key} contains a line break: customer data may "
                        "not add e-mail headers") for key in _HEADERS if line_break(payload.get(key))]
        issues += [Issue(f"headers.{k}", "header_injection", f"the {k} header contains a line break")
                   for k, v in payload.get("headers", {}).items() if line_break(v)]
        url = self.unsubscribe_url(context.get("message", {}).get("id", ""), context["customer"]["id"])
        if url not in str(payload.get("html", "")) and html_lib.escape(url) not in str(payload.get("html", "")):
            issues.append(Issue("html", "compliance", f"the rendered html lacks the recipient's unsubscribe link {url}"))
        if url not in str(payload.get("text", "")):
            issues.append(Issue("text", "compliance", f"the rendered text lacks the recipient's unsubscribe link {url}"))
        if not preview and self.unsubscribe_secret is None:
            issues.append(Issue("headers.List-Unsubscribe", "unsubscribe_unsigned",
                                "no unsubscribe_secret is configured: the unsubscribe link cannot be verified"))
        return issues


def _from_header(name: str | None, address: str | None) -> str | None:
    """The From value; a name with a line break is left unencoded so the compliance check sees it."""
    if not name:
        return address
    return f"{name} <{address}>" if line_break(name) else formataddr((name, address or ""))


@hookimpl
def register_channels(register, settings):
    """Register the e-mail channel."""
    register(Email(settings))


@hookimpl
def register_contact_fields(register):
    """Register ``email`` (syntax checked and normalised by the audience readers)."""
    register(ContactField("email", "e-mail address", normalise=email_address, normalise_column=email_addresses,
                          handle_type=email_handle_type, rule="name@domain.tld: one @, no spaces, a domain name with a dot"))
