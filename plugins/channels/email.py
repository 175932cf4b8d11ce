"""E-mail: subject, sender, the unsubscribe tag, HTML with a text part, RFC 8058 one-click headers."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from typing import Any

from email_validator import EmailNotValidError, validate_email

from engine import Creative, Customer, Issue, Message, Reachability, hookimpl, render_content

HTML_WARN_BYTES = 100 * 1024
_FIELDS = ("subject", "html", "text", "from", "reply_to", "sender_name", "preheader")


def html_to_text(markup: str) -> str:
    """A plain-text part from HTML: links kept as ``text (url)``, blocks on their own lines."""
    markup = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    markup = re.sub(r'(?is)<a\s[^>]*href="([^"]+)"[^>]*>(.*?)</a>', r"\2 (\1)", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|h[1-6]|li|tr)>", "\n", markup)
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", markup))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


class Email:
    """The e-mail channel. Settings: ``unsubscribe_base`` (URL), ``cost``."""

    name = "email"
    kind = "direct"
    required_tags = ("unsubscribe_url",)
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["subject", "html"],
        "properties": {k: {"type": "string"} for k in _FIELDS},
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = float(settings.get("cost", 0.001))
        self.unsubscribe_base = settings.get("unsubscribe_base", "https://herald.example/u")
        self.tags = {"unsubscribe_url": f"{self.unsubscribe_base}/preview"}

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Subject and HTML required; addresses valid; a warning above ~100 KB of HTML."""
        content, issues = creative.content, []
        for key in content:
            if key not in _FIELDS:
                issues.append(Issue(key, "unknown_key", f"unknown e-mail field {key!r}"))
        for key in ("subject", "html"):
            if not isinstance(content.get(key), str) or not content[key].strip():
                issues.append(Issue(key, "required", f"the {key} is required"))
        senders = message.delivery.senders.get("email", {})
        for key in ("from", "reply_to"):
            address = content.get(key) or senders.get(key)
            if address is None:
                if key == "from":
                    issues.append(Issue("from", "required", "a from address is required (creative or delivery.senders.email)"))
                continue
            try:
                validate_email(str(address), check_deliverability=False)
            except EmailNotValidError as exc:
                issues.append(Issue(key, "invalid_email", str(exc)))
        size = len(str(content.get("html", "")).encode())
        if size > HTML_WARN_BYTES:
            issues.append(Issue("html", "large_html", f"the HTML is {size // 1024} KB; mail clients clip above ~100 KB", "warning"))
        return issues

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """No address → contact_unavailable; otherwise the recorded status."""
        return Reachability.recorded(customer, self.name, "email")

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """An e-mail request: from, to, subject, html, text and the one-click unsubscribe headers."""
        unsubscribe = f"{self.unsubscribe_base}/{context['customer']['id']}"
        ctx = {**context, "unsubscribe_url": unsubscribe}
        content = render_content(dict(creative.content), ctx)
        defaults = context.get("delivery", {}).get("sender", {})
        sender = content.get("from") or defaults.get("from")
        content.setdefault("reply_to", defaults.get("reply_to"))
        content.setdefault("sender_name", defaults.get("sender_name"))
        if content.get("sender_name"):
            sender = f"{content['sender_name']} <{sender}>"
        return {
            "from": sender,
            "to": context["customer"].get("email"),
            "reply_to": content.get("reply_to"),
            "subject": content["subject"],
            "html": content["html"],
            "text": content.get("text") or html_to_text(content["html"]),
            "headers": {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        }


@hookimpl
def register_channels(register, settings):
    """Register the e-mail channel."""
    register(Email(settings))
