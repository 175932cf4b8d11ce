"""Viber: text (≤1,000 characters), an optional image, an optional button that needs both a caption and
a URL; the payload is a Viber REST API ``send_message`` request.

Settings (plugin ``plugins.channels.viber``): ``cost`` (default 0.004), ``sender_name`` (≤28 characters;
``delivery.senders.viber.name`` overrides it), ``sender_avatar`` (URL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from engine import (
    ContactField,
    ContactReach,
    ContactReachability,
    Creative,
    Issue,
    Message,
    SendContext,
    SendResult,
    hookimpl,
    render_content,
    transport_send,
    unknown_keys,
)
from engine import no_match as _no
from plugins.channels import setting_checks as setting

TEXT_MAX = 1000
CAPTION_MAX = 30
SENDER_MAX = 28
_SENDER_PATH = "delivery.senders.viber.name"  # a message-level path: where the sender name is set
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_REACH = ContactReach("viber", "viber_id", valid=lambda v: not any(c.isspace() for c in v),
                      rule="a Viber user id: no spaces or line breaks",
                             valid_expr=lambda c: _no(c, r"[\s\x1c-\x1f]"))  # Python's isspace: \s and \x1c–\x1f


def _url_problem(value: Any, where: str, schemes: tuple[str, ...]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{where} is required"
    parts = urlsplit(_TAG.sub("x", value))
    if parts.scheme not in schemes or not parts.netloc:
        return f"{where} must be an {' or '.join(schemes)} URL, not {value!r}"
    return None


class Viber(ContactReachability):
    """The Viber channel (REST bot API ``send_message``)."""

    name = "viber"
    reach = _REACH
    kind = "direct"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "anyOf": [{"required": ["text"]}, {"required": ["image"]}],
        "properties": {
            "text": {"type": "string", "maxLength": TEXT_MAX},
            "image": {"type": "string", "pattern": "^https://"},
            "button": {"type": "object", "required": ["caption", "url"], "additionalProperties": False,
                       "properties": {"caption": {"type": "string", "maxLength": CAPTION_MAX},
                                      "url": {"type": "string", "pattern": "^https?://"}}},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.004)
        self.sender_name = setting.text(settings, "sender_name")
        self.sender_avatar = setting.text(settings, "sender_avatar")

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"text": "{{ customer.first_name | default: 'Hi' }}, summer sale: 20% off", "image": "https://cdn.herald.example/summer.jpg",
                 "button": {"caption": "Shop now", "url": "https://shop.example/sale"}}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Text or image; text ≤1,000; image https; a button has caption (≤30) and an http(s) URL; sender name."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "Viber")
        text, image = content.get("text"), content.get("image")
        if not (isinstance(text, str) and text.strip()) and image is None:
            issues.append(Issue("text", "required", "a Viber message needs text or an image"))
        elif isinstance(text, str) and len(text) > TEXT_MAX:
            issues.append(Issue("text", "too_long", f"the text has {len(text)} characters; Viber accepts at most {TEXT_MAX}"))
        if image is not None and (p := _url_problem(image, "image", ("https",))):
            issues.append(Issue("image", "https_required", p))
        button = content.get("button")
        if button is not None:
            if not isinstance(button, Mapping):
                issues.append(Issue("button", "type", "button must be an object with caption and url"))
            else:
                caption = button.get("caption")
                if not isinstance(caption, str) or not caption.strip():
                    issues.append(Issue("button.caption", "required", "a button needs a caption"))
                elif len(caption) > CAPTION_MAX:
                    issues.append(Issue("button.caption", "too_long", f"the button caption has {len(caption)} characters; at most {CAPTION_MAX}"))
                if p := _url_problem(button.get("url"), "button.url", ("https", "http")):
                    issues.append(Issue("button.url", "required" if "required" in p else "url", p))
                issues += [Issue(f"button.{k}", "unknown_key", f"unknown button field {k!r}") for k in sorted(set(button) - {"caption", "url"})]
        name = message.delivery.senders.get("viber", {}).get("name") or self.sender_name
        if not name:
            issues.append(Issue(_SENDER_PATH, "sender_required", "Viber needs a sender name (delivery.senders.viber.name or plugin settings)"))
        elif len(str(name)) > SENDER_MAX:
            issues.append(Issue(_SENDER_PATH, "sender_too_long", f"the Viber sender name {name!r} is longer than {SENDER_MAX} characters"))
        return issues


    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the message to the Viber user ``payload["receiver"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("receiver"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """A ``send_message`` body: receiver, sender, type ``text`` or ``picture``, and a URL-button keyboard."""
        content = render_content(dict(creative.content), context)
        sender = {"name": context.get("delivery", {}).get("sender", {}).get("name") or self.sender_name}
        if self.sender_avatar:
            sender["avatar"] = self.sender_avatar
        payload: dict[str, Any] = {"receiver": context["customer"].get("viber_id"), "min_api_version": 1, "sender": sender}
        if content.get("image"):
            payload.update(type="picture", text=content.get("text", ""), media=content["image"])
        else:
            payload.update(type="text", text=content["text"])
        if content.get("button"):
            b = content["button"]
            payload["keyboard"] = {"Type": "keyboard", "DefaultHeight": False, "Buttons": [
                {"ActionType": "open-url", "ActionBody": b["url"], "Text": b["caption"], "Columns": 6, "Rows": 1}]}
        return payload


@hookimpl
def register_channels(register, settings):
    """Register the Viber channel."""
    register(Viber(settings))


@hookimpl
def register_contact_fields(register):
    """Register ``viber_id`` (taken as read; the channel checks it: ``_REACH.rule``)."""
    register(ContactField("viber_id", "Viber user id", rule=_REACH.rule))
