"""SMS: GSM-7/UCS-2 segmenting, sender ids, the opt-out tag, DND, gateway payloads."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from engine import Creative, Customer, Issue, Message, Reachability, hookimpl, render_content

# GSM 03.38 basic character set, and the extension table (each extension character costs two septets).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")
_URL = re.compile(r"https?://\S+")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)


def encoding(text: str) -> tuple[str, int]:
    """(``GSM-7`` or ``UCS-2``, length in that encoding's units: septets, or UTF-16 code units)."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        return "GSM-7", sum(2 if c in GSM7_EXTENDED else 1 for c in text)
    return "UCS-2", len(text.encode("utf-16-le")) // 2


def segments(text: str) -> tuple[str, int, int]:
    """(encoding, units, segments): GSM-7 160 single / 153 per part, UCS-2 70 / 67."""
    enc, units = encoding(text)
    single, part = (160, 153) if enc == "GSM-7" else (70, 67)
    return enc, units, 1 if units <= single else math.ceil(units / part)


class Sms:
    """The SMS channel. Settings: ``max_segments`` (default 6), ``optout_text``, ``short_link_length``."""

    name = "sms"
    kind = "direct"
    required_tags = ("optout",)
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["body"],
        "properties": {"body": {"type": "string"}, "sender_id": {"type": "string"}},
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = float(settings.get("cost", 0.01))
        self.max_segments = int(settings.get("max_segments", 6))
        self.short_link_length = int(settings.get("short_link_length", 23))
        self.tags = {"optout": settings.get("optout_text", "Reply STOP to opt out")}

    def sender(self, creative: Creative, message: Message) -> str | None:
        """The sender id: the creative's, else the message's delivery settings'."""
        return creative.content.get("sender_id") or message.delivery.senders.get("sms", {}).get("sender_id")

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Body present, known keys, sender id rules, and the segment count within the maximum."""
        content, issues = creative.content, []
        for key in content:
            if key not in self.creative_schema["properties"]:
                issues.append(Issue(key, "unknown_key", f"unknown SMS field {key!r}"))
        body = content.get("body")
        if not isinstance(body, str) or not body.strip():
            return [*issues, Issue("body", "required", "the SMS body is required")]
        sender = self.sender(creative, message)
        if sender is not None:
            issues += [Issue("sender_id", "sender_id", m) for m in sender_id_problems(str(sender))]
        estimate = self.estimated_text(body, message)
        enc, units, parts = segments(estimate)
        if parts > self.max_segments:
            issues.append(Issue("body", "too_long", f"{units} {enc} units make {parts} segments; the maximum is {self.max_segments}"))
        return issues

    def estimated_text(self, body: str, message: Message) -> str:
        """The body as it will be counted: tags replaced by their text, tracked links by a short link."""
        text = _TAG.sub(lambda m: self.tags["optout"] if "optout" in m.group(0) else "x" * 10, body)
        if message.delivery.tiny_url:
            text = _URL.sub("x" * self.short_link_length, text)
        return text

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """No phone → contact_unavailable; DND blocks unless the message may send to DND; else the recorded status."""
        status = Reachability.recorded(customer, self.name, "phone")
        if status.reachable and customer.attributes.get("dnd") is True and not message.delivery.send_to_dnd:
            return Reachability.UNSUBSCRIBED
        return status

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """A gateway request: to, from, text, encoding and segments."""
        text = render_content(creative.content["body"], context)
        enc, units, parts = segments(text)
        sender = creative.content.get("sender_id") or context.get("delivery", {}).get("sender", {}).get("sender_id")
        return {"to": context["customer"].get("phone"), "from": sender,
                "text": text, "encoding": enc, "units": units, "segments": parts}


def sender_id_problems(sender: str) -> list[str]:
    """Alphanumeric sender ids are 1–11 letters/digits (not all digits); numeric ones are 3–15 digits."""
    if sender.isdigit():
        return [] if 3 <= len(sender) <= 15 else ["a numeric sender id (short or long code) has 3 to 15 digits"]
    if not re.fullmatch(r"[A-Za-z0-9 ]{1,11}", sender):
        return ["an alphanumeric sender id has at most 11 letters, digits or spaces"]
    return []


@hookimpl
def register_channels(register, settings):
    """Register the SMS channel."""
    register(Sms(settings))
