"""A TikTok business-messaging channel for Herald (example third-party plugin).

Customers are reached by their ``tiktok_id`` (the open id of a user who has messaged the business
account); ``subscription.tiktok`` records opt-outs. Creatives have a ``text`` (at most 1,000 characters
after rendering, and the ``{{ optout }}`` tag is required) and an optional https ``link``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from engine import (
    Creative,
    Customer,
    Issue,
    Message,
    Reachability,
    SendContext,
    SendResult,
    hookimpl,
    render_content,
    transport_send,
)

TEXT_MAX = 1000


class Tiktok:
    """The ``tiktok`` channel. Settings: ``cost`` (per message), ``optout_text``."""

    name = "tiktok"
    kind = "direct"
    required_tags = ("optout",)
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": TEXT_MAX}, "link": {"type": "string"}},
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = float(settings.get("cost", 0.002))
        self.tags = {"optout": settings.get("optout_text", "Reply STOP to stop messages")}

    def sample_creatives(self) -> list[Creative]:
        """Valid creatives, for Herald's contract test kit and for the docs."""
        return [
            Creative(self.name, "default", {"text": "Hi {{ customer.first_name }}, the summer drop is live! {{ optout }}"}),
            Creative(self.name, "default", {"text": "New arrivals for you. {{ optout }}",
                                            "link": "https://shop.example/new?src=tiktok"}),
        ]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Text required and within the limit; an https link; no unknown fields."""
        content, issues = creative.content, []
        issues += [Issue(k, "unknown_key", f"unknown TikTok field {k!r}") for k in content
                   if k not in self.creative_schema["properties"]]
        text = content.get("text")
        if not isinstance(text, str) or not text.strip():
            issues.append(Issue("text", "required", "the TikTok message text is required"))
        elif len(text) > TEXT_MAX:
            issues.append(Issue("text", "too_long", f"the text has {len(text)} characters; the limit is {TEXT_MAX}"))
        link = content.get("link")
        if link is not None and urlparse(str(link)).scheme != "https":
            issues.append(Issue("link", "https_required", f"the link must be an https URL, got {link!r}"))
        return issues

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """No ``tiktok_id`` → contact_unavailable; else the recorded ``subscription.tiktok`` (valid if unknown)."""
        return Reachability.recorded(customer, self.name, "tiktok_id")

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the request to the open id in ``payload["recipient"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=(payload.get("recipient") or {}).get("open_id"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """The send request: recipient open id and a text message (with the link appended)."""
        content = render_content(dict(creative.content), context)
        text = content["text"] + (f" {content['link']}" if content.get("link") else "")
        return {"recipient": {"open_id": context["customer"].get("tiktok_id")},
                "message": {"type": "text", "text": {"body": text}}}


@hookimpl
def register_channels(register, settings):
    """Register the TikTok channel."""
    register(Tiktok(settings))
