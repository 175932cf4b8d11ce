"""LINE: up to five text (≤5,000 characters) and image messages; the payload is a LINE Messaging API
push request (``POST /v2/bot/message/push``).

Settings (plugin ``plugins.channels.line``): ``cost`` (default 0.003).
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

TEXT_MAX = 5000
URL_MAX = 2000
MESSAGES_MAX = 5
USER_ID = re.compile(r"U[0-9a-f]{32}")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_REACH = ContactReach("line", "line_id", valid=USER_ID.fullmatch,
                      rule="a LINE user id: U followed by 32 lower-case hex digits (0-9, a-f)",
                             valid_expr=lambda c: (c.str.len_bytes() == 33) & c.str.starts_with("U")
                             & _no(c.str.slice(1), "[^0-9a-f]"))


def _image_url_issues(value: Any, where: str) -> list[Issue]:
    if not isinstance(value, str) or not value.strip():
        return [Issue(where, "required", f"{where} is required for an image message")]
    parts = urlsplit(_TAG.sub("x", value))
    if parts.scheme != "https" or not parts.netloc:
        return [Issue(where, "https_required", f"{where} must be an https URL, not {value!r}")]
    if len(value) > URL_MAX:
        return [Issue(where, "too_long", f"{where} has {len(value)} characters; LINE accepts at most {URL_MAX}")]
    return []


class Line(ContactReachability):
    """The LINE channel (Messaging API push messages to a user id)."""

    name = "line"
    reach = _REACH
    kind = "direct"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {
                "type": "array", "minItems": 1, "maxItems": MESSAGES_MAX,
                "items": {"oneOf": [
                    {"type": "object", "required": ["type", "text"], "additionalProperties": False,
                     "properties": {"type": {"const": "text"}, "text": {"type": "string", "maxLength": TEXT_MAX}}},
                    {"type": "object", "required": ["type", "original_url"], "additionalProperties": False,
                     "properties": {"type": {"const": "image"}, "original_url": {"type": "string", "pattern": "^https://"},
                                    "preview_url": {"type": "string", "pattern": "^https://"}}},
                ]},
            },
            "notification_disabled": {"type": "boolean"},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.003)

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"messages": [{"type": "text", "text": "{{ customer.first_name | default: 'Hi' }}, 20% off this weekend!"},
                              {"type": "image", "original_url": "https://cdn.herald.example/summer.jpg"}]}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """One to five messages; text ≤5,000 characters; images as https URLs of at most 2,000 characters."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "LINE")
        messages = content.get("messages")
        if not isinstance(messages, list) or not messages:
            return [*issues, Issue("messages", "required", "LINE needs at least one message (text or image)")]
        if len(messages) > MESSAGES_MAX:
            issues.append(Issue("messages", "too_many", f"LINE pushes at most {MESSAGES_MAX} messages at once; there are {len(messages)}"))
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            kind = m.get("type") if isinstance(m, Mapping) else None
            if kind == "text":
                text = m.get("text")
                if not isinstance(text, str) or not text.strip():
                    issues.append(Issue(f"{where}.text", "required", f"{where}.text is required"))
                elif len(text) > TEXT_MAX:
                    issues.append(Issue(f"{where}.text", "too_long", f"{where}.text has {len(text)} characters; at most {TEXT_MAX}"))
                extra = set(m) - {"type", "text"}
            elif kind == "image":
                issues += _image_url_issues(m.get("original_url"), f"{where}.original_url")
                if m.get("preview_url") is not None:
                    issues += _image_url_issues(m["preview_url"], f"{where}.preview_url")
                extra = set(m) - {"type", "original_url", "preview_url"}
            else:
                issues.append(Issue(f"{where}.type", "enum", f"{where}.type must be text or image"))
                continue
            issues += [Issue(f"{where}.{k}", "unknown_key", f"unknown field {k!r} in a LINE {kind} message") for k in sorted(extra)]
        return issues


    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the push request to the LINE user ``payload["to"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("to"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """A push request: ``{"to": user id, "messages": [{"type": "text", "text"} | {"type": "image", …}]}``."""
        content = render_content(dict(creative.content), context)
        messages = []
        for m in content["messages"]:
            if m["type"] == "text":
                messages.append({"type": "text", "text": m["text"]})
            else:
                messages.append({"type": "image", "originalContentUrl": m["original_url"],
                                 "previewImageUrl": m.get("preview_url") or m["original_url"]})
        payload: dict[str, Any] = {"to": context["customer"].get("line_id"), "messages": messages}
        if content.get("notification_disabled"):
            payload["notificationDisabled"] = True
        return payload


@hookimpl
def register_channels(register, settings):
    """Register the LINE channel."""
    register(Line(settings))


@hookimpl
def register_contact_fields(register):
    """Register ``line_id`` (taken as read; the channel checks it: ``_REACH.rule``)."""
    register(ContactField("line_id", "LINE user id", rule=_REACH.rule))
