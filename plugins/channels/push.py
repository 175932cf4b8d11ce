"""Mobile push: title/body limits, an https image, a deep link with an allowed scheme, Android and iOS
fields; the payload is an FCM HTTP v1 ``messages:send`` request.

Settings (plugin ``plugins.channels.push``): ``cost`` (default 0.0001), ``title_max`` (65), ``body_max``
(240), ``deep_link_schemes`` (allowed URL schemes, default ``["https"]``; add the app's own, e.g. ``myapp``).
"""

from __future__ import annotations

import json
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

FCM_MAX_BYTES = 4096
TTL_MAX = 28 * 24 * 3600
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]{16,4096}")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_NEVER = frozenset({"javascript", "data", "file", "vbscript", "about", "blob"})
_ANDROID = {"channel_id": str, "priority": str, "ttl": int, "collapse_key": str, "color": str, "sound": str, "tag": str}
_IOS = {"badge": int, "sound": str, "category": str, "thread_id": str}


def valid_token(token: str) -> bool:
    """Whether ``token`` looks like an FCM registration token (16–4096 URL-safe characters)."""
    return bool(_TOKEN.fullmatch(token))


_REACH = ContactReach("push", "push_token", valid=valid_token,
                      rule="a push registration token: 16 to 4096 characters, letters, digits and _ : . -",
                             valid_expr=lambda c: _no(c, r"[^A-Za-z0-9_:.\-]") & c.str.len_bytes().is_between(16, 4096))


def _untemplated(text: str) -> str:
    return _TAG.sub("x", text)


class Push(ContactReachability):
    """The mobile push channel (FCM for Android and iOS)."""

    name = "push"
    reach = _REACH
    kind = "direct"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["title", "body"],
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "body": {"type": "string", "minLength": 1},
            "image": {"type": "string", "format": "uri", "pattern": "^https://"},
            "deep_link": {"type": "string", "format": "uri"},
            "data": {"type": "object", "additionalProperties": {"type": "string"}},
            "android": {"type": "object", "additionalProperties": False, "properties": {
                "channel_id": {"type": "string"}, "priority": {"enum": ["normal", "high"]},
                "ttl": {"type": "integer", "minimum": 0, "maximum": TTL_MAX}, "collapse_key": {"type": "string"},
                "color": {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"}, "sound": {"type": "string"},
                "tag": {"type": "string"}}},
            "ios": {"type": "object", "additionalProperties": False, "properties": {
                "badge": {"type": "integer", "minimum": 0}, "sound": {"type": "string"},
                "category": {"type": "string"}, "thread_id": {"type": "string"}}},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.0001)
        self.title_max = setting.whole(settings, "title_max", 65)
        self.body_max = setting.whole(settings, "body_max", 240)
        self.schemes = tuple(s.lower() for s in setting.texts(settings, "deep_link_schemes", ("https",)) or ())

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"title": "Summer sale is live", "body": "{{ customer.first_name | default: 'Hi' }}, 20% off today only",
                 "image": "https://cdn.herald.example/summer.png", "deep_link": "https://shop.example/sale",
                 "android": {"channel_id": "offers", "priority": "high"}, "ios": {"badge": 1, "sound": "default"}}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Title and body within limits, https image, deep-link scheme, platform fields, payload size."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "push")
        for key, limit in (("title", self.title_max), ("body", self.body_max)):
            value = content.get(key)
            if not isinstance(value, str) or not value.strip():
                issues.append(Issue(key, "required", f"the push {key} is required"))
            elif len(_untemplated(value)) > limit:
                issues.append(Issue(key, "too_long", f"the push {key} has {len(value)} characters; at most {limit} are shown"))
        image = content.get("image")
        if image is not None:
            parts = urlsplit(_untemplated(str(image)))
            if parts.scheme != "https" or not parts.netloc:
                issues.append(Issue("image", "https_required", f"the image must be an https URL, not {image!r}"))
        link = content.get("deep_link")
        if link is not None:
            scheme = urlsplit(_untemplated(str(link))).scheme.lower()
            if not scheme or scheme in _NEVER or scheme not in self.schemes:
                issues.append(Issue("deep_link", "deep_link_scheme",
                                    f"the deep_link scheme {scheme or '(none)'!r} is not allowed; allowed: {', '.join(self.schemes)}"))
            elif scheme in ("http", "https") and not urlsplit(str(link)).netloc:
                issues.append(Issue("deep_link", "deep_link_host", "the deep_link needs a host"))
        data = content.get("data", {})
        if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
            issues.append(Issue("data", "type", "data must map keys to strings (FCM data values are strings)"))
        elif reserved := [k for k in data if k in ("from", "message_type") or k.startswith(("google.", "gcm."))]:
            issues.append(Issue(f"data.{reserved[0]}", "reserved_key", f"the data key {reserved[0]!r} is reserved by FCM"))
        issues += _platform_issues(content.get("android"), "android", _ANDROID)
        issues += _platform_issues(content.get("ios"), "ios", _IOS)
        android = content.get("android") or {}
        if isinstance(android, Mapping):
            if android.get("priority") not in (None, "normal", "high"):
                issues.append(Issue("android.priority", "enum", "android.priority is normal or high"))
            if isinstance(android.get("ttl"), int) and not 0 <= android["ttl"] <= TTL_MAX:
                issues.append(Issue("android.ttl", "range", f"android.ttl is 0 to {TTL_MAX} seconds (28 days)"))
            if isinstance(android.get("color"), str) and not _COLOR.fullmatch(android["color"]):
                issues.append(Issue("android.color", "format", "android.color is #RRGGBB"))
        ios = content.get("ios") or {}
        if isinstance(ios, Mapping) and isinstance(ios.get("badge"), int) and ios["badge"] < 0:
            issues.append(Issue("ios.badge", "range", "ios.badge is 0 or more"))
        if not any(i.is_error for i in issues):
            size = len(json.dumps(self._payload(dict(content), "x" * 163), ensure_ascii=False).encode())
            if size > FCM_MAX_BYTES:
                issues.append(Issue("body", "payload_too_large", f"the FCM message is {size} bytes; the limit is {FCM_MAX_BYTES}"))
        return issues


    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the FCM request to ``payload["message"]["token"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=(payload.get("message") or {}).get("token"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """An FCM HTTP v1 request body: ``{"message": {token, notification, data, android, apns}}``."""
        content = render_content(dict(creative.content), context)
        return self._payload(content, context["customer"].get("push_token"))

    def _payload(self, content: Mapping[str, Any], token: str | None) -> dict[str, Any]:
        notification = {"title": content["title"], "body": content["body"]}
        if content.get("image"):
            notification["image"] = content["image"]
        data = {str(k): str(v) for k, v in (content.get("data") or {}).items()}
        if content.get("deep_link"):
            data["deep_link"] = content["deep_link"]
        a = dict(content.get("android") or {})
        android: dict[str, Any] = {"priority": a.get("priority", "high")}
        if "ttl" in a:
            android["ttl"] = f"{int(a['ttl'])}s"
        if a.get("collapse_key"):
            android["collapse_key"] = a["collapse_key"]
        an = {k: a[k] for k in ("channel_id", "color", "sound", "tag") if a.get(k)}
        if content.get("deep_link"):
            an["click_action"] = "OPEN_DEEP_LINK"
        if an:
            android["notification"] = an
        i = dict(content.get("ios") or {})
        aps: dict[str, Any] = {k.replace("_", "-"): i[k] for k in ("badge", "sound", "category", "thread_id") if k in i}
        apns: dict[str, Any] = {"headers": {"apns-priority": "10" if android["priority"] == "high" else "5"}}
        if content.get("image"):
            aps["mutable-content"] = 1
            apns["fcm_options"] = {"image": content["image"]}
        apns["payload"] = {"aps": aps}
        message: dict[str, Any] = {"token": token, "notification": notification, "android": android, "apns": apns}
        if data:
            message["data"] = data
        return {"message": message}


def _platform_issues(value: Any, where: str, fields: Mapping[str, type]) -> list[Issue]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [Issue(where, "type", f"{where} must be an object")]
    issues = []
    for key, v in value.items():
        if key not in fields:
            issues.append(Issue(f"{where}.{key}", "unknown_key", f"unknown {where} field {key!r}; known: {', '.join(fields)}"))
        elif not isinstance(v, fields[key]) or isinstance(v, bool):
            issues.append(Issue(f"{where}.{key}", "type", f"{where}.{key} must be a {fields[key].__name__}"))
    return issues


@hookimpl
def register_channels(register, settings):
    """Register the mobile push channel."""
    register(Push(settings))


@hookimpl
def register_contact_fields(register):
    """Register ``push_token`` (taken as read; the channel checks it: ``_REACH.rule``)."""
    register(ContactField("push_token", "mobile push registration token", rule=_REACH.rule))
