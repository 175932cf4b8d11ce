"""WhatsApp: approved message templates only (name, language, category, positional ``{{1}}`` parameters);
the payload is a WhatsApp Cloud API ``/messages`` request of type ``template``.

A creative names the template and repeats its approved body text (for previews and to count the slots):

    {name: order_ready, language: en_US, category: utility,
     body: "Hi {{1}}, your order {{2}} is ready.",
     parameters: ["{{ customer.first_name }}", "{{ vars.order_id }}"]}

Rendered parameters are re-checked (``compliance``): a parameter that customer data makes empty, multi-line,
tabbed or padded with 4+ spaces drops the channel for that recipient.

Settings (plugin ``plugins.channels.whatsapp``): ``cost`` (default 0.005), ``templates`` (optional registry of
approved templates: name → ``{language, category, body, status}``; when given, the creative must match it
and the status must be ``approved``), ``default_region`` (for numbers stored without ``+``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine import (
    PHONE_TYPE_NAMES,
    ContactField,
    ContactReach,
    Creative,
    Customer,
    Issue,
    Message,
    Reachability,
    SendContext,
    SendResult,
    e164_number,
    hookimpl,
    lazy,
    phone_line_type,
    render_content,
    transport_send,
    unknown_keys,
    whatsapp_number,
    whatsapp_numbers,
)
from plugins.channels import setting_checks as setting

if TYPE_CHECKING:
    import polars as pl
else:  # imported when a frame is first used
    pl = lazy("polars")

CATEGORIES = ("utility", "marketing", "authentication")
NAME = re.compile(r"[a-z0-9_]+")
LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
NAME_MAX = 512
BODY_MAX = 1024
_SLOT = re.compile(r"{{\s*(\d+)\s*}}")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_SPACES = re.compile(r" {4,}")


def wa_number(value: str, region: str | None = None) -> str | None:
    """The number as WhatsApp wants it (E.164 digits, no ``+``) when valid, else None."""
    number = e164_number(value, region)
    return number.lstrip("+") if number else None


def parameter_problems(text: str) -> list[str]:
    """Why WhatsApp would refuse a template parameter: empty, a new line, a tab, or 4+ consecutive spaces."""
    problems = []
    if not text.strip():
        problems.append("is empty")
    if "\n" in text or "\r" in text:
        problems.append("contains a new line")
    if "\t" in text:
        problems.append("contains a tab")
    if _SPACES.search(text):
        problems.append("contains 4 or more consecutive spaces")
    return problems


def slots(body: str) -> list[int]:
    """The positional parameter numbers of a template body, in order of appearance."""
    return [int(n) for n in _SLOT.findall(body)]


class WhatsApp:
    """The WhatsApp channel (Cloud API template messages)."""

    name = "whatsapp"
    kind = "direct"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["name", "language", "category", "body"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9_]+$", "maxLength": NAME_MAX},
            "language": {"type": "string", "pattern": "^[a-z]{2,3}(_[A-Z]{2})?$"},
            "category": {"enum": list(CATEGORIES)},
            "body": {"type": "string", "maxLength": BODY_MAX, "description": "the approved text with {{1}} slots"},
            "parameters": {"type": "array", "items": {"type": "string"}},
            "header_image": {"type": "string", "pattern": "^https://"},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.005)
        self.region = setting.region(settings)
        self._reach = ContactReach(self.name, "whatsapp", kinds=PHONE_TYPE_NAMES, valid=lambda v: wa_number(v, self.region) is not None,
                                   rule="a valid phone number in international form (+ and country code)")
        registry = setting.mapping(settings, "templates", of="template name → its approved fields")
        self.templates = ({str(k): dict(setting.mapping(registry, k, of="language, category, body and status",
                                                        where="templates.") or {}) for k in registry}
                          if registry is not None else None)

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"name": "summer_sale_2026", "language": "en_US", "category": "marketing",
                 "body": "Hi {{1}}, our summer sale is on: {{2}} off until Sunday.",
                 "parameters": ["{{ customer.first_name | default: 'there' }}", "20%"]}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Name, language and category; slots numbered 1..n; as many parameters as slots; parameters on one
        line; an https header image; and, with a registry, an approved template that matches."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "WhatsApp")
        name = content.get("name")
        if not isinstance(name, str) or not name:
            issues.append(Issue("name", "required", "the WhatsApp template name is required"))
        elif not NAME.fullmatch(name) or len(name) > NAME_MAX:
            issues.append(Issue("name", "format", f"template name {name!r} may only use lowercase letters, digits and _"))
        language = content.get("language")
        if not isinstance(language, str) or not LANGUAGE.fullmatch(language):
            issues.append(Issue("language", "format", f"language {language!r} must be a WhatsApp code such as en or en_US"))
        category = content.get("category")
        if not isinstance(category, str) or category.lower() not in CATEGORIES:
            issues.append(Issue("category", "enum", f"category {category!r} must be one of {', '.join(CATEGORIES)}"))
        body = content.get("body")
        numbers: list[int] = []
        if not isinstance(body, str) or not body.strip():
            issues.append(Issue("body", "required", "the approved template body (with its {{1}} slots) is required"))
        else:
            if len(body) > BODY_MAX:
                issues.append(Issue("body", "too_long", f"the body has {len(body)} characters; WhatsApp allows {BODY_MAX}"))
            numbers = sorted(set(slots(body)))
            if numbers != list(range(1, len(numbers) + 1)):
                issues.append(Issue("body", "slots", f"body slots must be numbered {{{{1}}}} to {{{{{len(numbers)}}}}} without gaps; found {numbers}"))
            if leftover := [t for t in _TAG.findall(_SLOT.sub("", body))]:
                issues.append(Issue("body", "named_tag", f"the approved body holds only positional slots; move {leftover[0]} into parameters"))
        params = content.get("parameters", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            issues.append(Issue("parameters", "type", "parameters must be a list of texts"))
        else:
            if body is not None and len(params) != len(numbers):
                issues.append(Issue("parameters", "count", f"the body has {len(numbers)} slots but {len(params)} parameters are given"))
            for i, p in enumerate(params):
                if not p.strip():
                    issues.append(Issue(f"parameters[{i}]", "required", f"parameters[{i}] is empty"))
                elif problems := parameter_problems(p):
                    issues.append(Issue(f"parameters[{i}]", "format", f"parameters[{i}] {' and '.join(problems)}; "
                                        "WhatsApp refuses new lines, tabs and 4+ consecutive spaces"))
        image = content.get("header_image")
        if image is not None:
            parts = urlsplit(_TAG.sub("x", str(image)))
            if parts.scheme != "https" or not parts.netloc:
                issues.append(Issue("header_image", "https_required", f"header_image must be an https URL, not {image!r}"))
        if self.templates is not None and isinstance(name, str):
            issues += self._registry_issues(name, content)
        return issues

    def _registry_issues(self, name: str, content: Mapping[str, Any]) -> list[Issue]:
        approved = self.templates.get(name) if self.templates is not None else None
        if approved is None:
            return [Issue("name", "unknown_template", f"template {name!r} is not among this account's templates")]
        issues = []
        if str(approved.get("status", "approved")).lower() != "approved":
            issues.append(Issue("name", "not_approved", f"template {name!r} is {approved.get('status')}, not approved"))
        for key in ("language", "category", "body"):
            want, got = approved.get(key), content.get(key)
            if want is None:
                continue
            if (str(want).lower() != str(got).lower()) if key == "category" else want != got:
                issues.append(Issue(key, "template_mismatch", f"template {name!r} was approved with {key} {want!r}, not {got!r}"))
        return issues

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """No WhatsApp number → contact_unavailable; a recorded unreachable status wins; an invalid number →
        invalid; else the recorded status (nothing recorded counts as reachable)."""
        return self._reach.of(customer)

    def reachability_reason(self, customer: Customer, message: Message) -> str | None:
        """Why the customer cannot get WhatsApp messages (None when they can), for the trace."""
        return self._reach.reason(customer)

    def reachability_expr(self, message: Message) -> pl.Expr:
        """``reachability`` over a frame with ``customer.whatsapp`` and ``customer.subscription.whatsapp``."""
        return self._reach.expr()

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the template message to ``payload["to"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("to"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """A Cloud API template message: to, template name, language code and header/body components."""
        content = creative.content
        params = [render_content(p, context) for p in content.get("parameters", [])]
        components: list[dict[str, Any]] = []
        if content.get("header_image"):
            link = render_content(content["header_image"], context)
            components.append({"type": "header", "parameters": [{"type": "image", "image": {"link": link}}]})
        if params:
            components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in params]})
        number = context["customer"].get("whatsapp")
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": wa_number(str(number), self.region) or number,
            "type": "template",
            "template": {"name": content["name"], "language": {"code": content["language"]}, "components": components},
        }


    def compliance(self, payload: Mapping[str, Any], context: Mapping[str, Any], *, preview: bool = True) -> list[Issue]:
        """The rendered parameters re-checked (customer data may not make them empty, multi-line, tabbed or
        space-padded) and the rendered header image an https URL."""
        issues = []
        for component in payload.get("template", {}).get("components", ()):
            for i, param in enumerate(component.get("parameters", ())):
                if component.get("type") == "body":
                    text = str(param.get("text", ""))
                    issues += [Issue(f"parameters[{i}]", "whatsapp_parameter", f"rendered parameters[{i}] {p}: "
                                     f"{text!r}") for p in parameter_problems(text)]
                elif param.get("type") == "image":
                    parts = urlsplit(str(param.get("image", {}).get("link", "")))
                    if parts.scheme != "https" or not parts.netloc:
                        issues.append(Issue("header_image", "https_required", "the rendered header_image is not an https URL"))
        return issues


@hookimpl
def register_channels(register, settings):
    """Register the WhatsApp channel."""
    register(WhatsApp(settings))


@hookimpl
def register_contact_fields(register, settings):
    """Register ``whatsapp`` (read in the ``default_region`` setting when numbers have no ``+``)."""
    register(ContactField("whatsapp", "WhatsApp number, E.164", normalise=whatsapp_number,
                          normalise_column=whatsapp_numbers, handle_type=phone_line_type,
                          region=setting.region(settings),
                          rule="a valid phone number in international form (+ and country code)"))
