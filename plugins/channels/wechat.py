"""WeChat: official-account template messages (template id, data fields, optional URL or mini program);
the payload is a ``/cgi-bin/message/template/send`` request body.

Settings (plugin ``plugins.channels.wechat``): ``cost`` (default 0.002), ``templates`` (optional registry:
template id → list of its data field names; when given, a creative must use a registered template and
fill exactly its fields), ``value_max`` (characters per data value, default 200).
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

OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TEMPLATE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_REACH = ContactReach("wechat", "wechat_openid", valid=OPENID.fullmatch,
                      rule="a WeChat openid: 6 to 64 characters, letters, digits, _ and -",
                             valid_expr=lambda c: _no(c, "[^A-Za-z0-9_-]") & c.str.len_bytes().is_between(6, 64))


class WeChat(ContactReachability):
    """The WeChat channel (template messages to a follower's openid)."""

    name = "wechat"
    reach = _REACH
    kind = "direct"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["template_id", "data"],
        "properties": {
            "template_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
            "data": {"type": "object", "minProperties": 1, "additionalProperties": {"oneOf": [
                {"type": "string"},
                {"type": "object", "required": ["value"], "properties": {
                    "value": {"type": "string"}, "color": {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"}}}]}},
            "url": {"type": "string", "pattern": "^https?://"},
            "miniprogram": {"type": "object", "required": ["appid"], "properties": {
                "appid": {"type": "string"}, "pagepath": {"type": "string"}}},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.002)
        self.value_max = setting.whole(settings, "value_max", 200)
        registry = setting.mapping(settings, "templates", of="template id → list of field names")
        self.templates = ({str(k): setting.texts(registry, k, (), where="templates.") for k in registry}
                          if registry is not None else None)

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY", "url": "https://shop.example/sale",
                 "data": {"first": {"value": "Summer sale", "color": "#173177"},
                          "keyword1": "{{ customer.first_name | default: 'Member' }}", "remark": "20% off until Sunday"}}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Template id (registered, when a registry is configured), data fields, colours, URL, mini program."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "WeChat")
        template = content.get("template_id")
        if not isinstance(template, str) or not template.strip():
            issues.append(Issue("template_id", "required", "the WeChat template_id is required"))
            template = None
        elif not _TEMPLATE_ID.fullmatch(template):
            issues.append(Issue("template_id", "format", f"template_id {template!r} has characters WeChat ids never have"))
        elif self.templates is not None and template not in self.templates:
            issues.append(Issue("template_id", "unknown_template", f"template {template!r} is not registered for this account"))
        data = content.get("data")
        if not isinstance(data, Mapping) or not data:
            issues.append(Issue("data", "required", "data must fill the template's fields, e.g. {first: ..., keyword1: ...}"))
            data = {}
        for key, value in data.items():
            where = f"data.{key}"
            if not _KEY.fullmatch(str(key)):
                issues.append(Issue(where, "format", f"data field name {key!r} is not a WeChat keyword name"))
            text = value.get("value") if isinstance(value, Mapping) else value
            if not isinstance(text, str):
                issues.append(Issue(f"{where}.value" if isinstance(value, Mapping) else where, "type", f"{where} needs a text value"))
            elif len(_TAG.sub("x" * 8, text)) > self.value_max:
                issues.append(Issue(where, "too_long", f"{where} has more than {self.value_max} characters"))
            if isinstance(value, Mapping) and value.get("color") is not None and not _COLOR.fullmatch(str(value["color"])):
                issues.append(Issue(f"{where}.color", "format", f"{where}.color is #RRGGBB"))
        if template and self.templates is not None and template in self.templates:
            expected, given = set(self.templates[template] or ()), set(map(str, data))
            for name in sorted(expected - given):
                issues.append(Issue(f"data.{name}", "required", f"template {template} needs the data field {name!r}"))
            for name in sorted(given - expected):
                issues.append(Issue(f"data.{name}", "unknown_field", f"template {template} has no data field {name!r}"))
        url = content.get("url")
        if url is not None:
            parts = urlsplit(_TAG.sub("x", str(url)))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                issues.append(Issue("url", "url", f"url must be an http(s) URL, not {url!r}"))
        mini = content.get("miniprogram")
        if mini is not None and not (isinstance(mini, Mapping) and isinstance(mini.get("appid"), str) and mini["appid"]):
            issues.append(Issue("miniprogram.appid", "required", "a miniprogram needs its appid"))
        return issues


    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the template message to the openid ``payload["touser"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("touser"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """``{"touser", "template_id", "url"?, "miniprogram"?, "data": {key: {"value", "color"?}}}``."""
        content = render_content(dict(creative.content), context)
        data = {}
        for key, value in content["data"].items():
            data[key] = dict(value) if isinstance(value, Mapping) else {"value": value}
        payload: dict[str, Any] = {"touser": context["customer"].get("wechat_openid"),
                                   "template_id": content["template_id"], "data": data}
        if content.get("url"):
            payload["url"] = content["url"]
        if content.get("miniprogram"):
            payload["miniprogram"] = dict(content["miniprogram"])
        return payload


@hookimpl
def register_channels(register, settings):
    """Register the WeChat channel."""
    register(WeChat(settings))


@hookimpl
def register_contact_fields(register):
    """Register ``wechat_openid`` (taken as read; the channel checks it: ``_REACH.rule``)."""
    register(ContactField("wechat_openid", "WeChat openid", rule=_REACH.rule))
