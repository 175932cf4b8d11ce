"""SMS: GSM-7/UCS-2 segmenting, sender ids, the opt-out tag, DND, India DLT templates, gateway payloads.

Settings (plugin ``plugins.channels.sms``): ``cost`` (per send, default 0.01), ``max_segments`` (6),
``optout_text`` (never empty), ``short_link_length`` (23: a tracked link's length once shortened),
``default_region`` (for numbers stored without ``+``), and ``dlt`` to turn on India DLT mode::

    dlt:
      entity_id: "1101234567890123456"          # the principal entity id registered on the DLT portal
      templates:
        - {id: "1107160000000000001", category: promotional, body: "Sale! {#var#} off. {#var#}"}

A creative (or ``delivery.senders.sms``) may name its template with ``dlt_template_id``; otherwise the
first registered template the body matches is used. In DLT mode the sender id is a DLT header, checked by
the DLT rules instead of the general ones: 3–9 ASCII digits for promotional templates, 3–9 ASCII letters
for the other categories (so a 9-digit promotional header is valid there, though not as a short code).

Every rendered SMS is checked (``compliance``): it must contain the opt-out text, stay within
``max_segments``, and in DLT mode match its template with each ``{#var#}`` at most 30 characters;
otherwise the recipient loses the channel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import phonenumbers

from engine import (
    SMS_TYPE_NAMES,
    ContactField,
    ContactReach,
    Creative,
    Customer,
    Issue,
    Message,
    Reachability,
    SendContext,
    SendResult,
    fact_column,
    hookimpl,
    lazy,
    phone_line_type,
    phone_number,
    phone_numbers,
    render_content,
    transport_send,
    unknown_keys,
)
from plugins.channels import setting_checks as setting

if TYPE_CHECKING:
    import polars as pl
else:  # imported when a frame is first used
    pl = lazy("polars")

# GSM 03.38 basic character set, and the extension table (each extension character costs two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
DLT_CATEGORIES = ("promotional", "service_explicit", "service_implicit", "transactional")
DLT_VAR = "{#var#}"
DLT_VAR_MAX = 30  # characters one {#var#} may carry
_URL = re.compile(r"https?://[^\s{}]+")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_OPTOUT = re.compile(r"{{-?\s*optout\s*-?}}")
_ALPHA_SENDER = re.compile(r"[A-Za-z0-9 .&_-]{1,11}")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_DLT_NUMERIC = re.compile(r"[0-9]{3,9}")  # a DLT header for promotional templates
_DLT_ALPHA = re.compile(r"[A-Za-z]{3,9}")  # a DLT header for service and transactional templates
_TAG_ESTIMATE = 10  # characters a personalisation tag is assumed to render to
_REACHABLE = tuple(r.value for r in Reachability if r.reachable)
_NOT_SMS = {phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST,
            phonenumbers.PhoneNumberType.VOICEMAIL, phonenumbers.PhoneNumberType.UAN}


def _units(c: str, enc: str) -> int:
    """What one character costs: septets in GSM-7 (2 for an escape pair), UTF-16 code units in UCS-2."""
    if enc == "GSM-7":
        return 2 if c in GSM7_EXTENDED else 1
    return 2 if ord(c) > 0xFFFF else 1


def encoding(text: str) -> tuple[str, int]:
    """(``GSM-7`` or ``UCS-2``, length in that encoding's units: septets, or UTF-16 code units)."""
    enc = "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text) else "UCS-2"
    return enc, sum(_units(c, enc) for c in text)


def segments(text: str) -> tuple[str, int, int]:
    """(encoding, units, segments) as an SMSC sends it: one part up to 160 septets / 70 UCS-2 units, else
    parts of 153 / 67 filled in order, where a GSM-7 escape pair or a UTF-16 surrogate pair that does not
    fit in the current part starts the next one (a pair is never split)."""
    enc, units = encoding(text)
    single, part = (160, 153) if enc == "GSM-7" else (70, 67)
    if units <= single:
        return enc, units, 1
    parts, used = 1, 0
    for c in text:
        cost = _units(c, enc)
        if used + cost > part:
            parts, used = parts + 1, 0
        used += cost
    return enc, units, parts


@lru_cache(maxsize=65536)
def sms_number(value: str, region: str | None = None) -> str | None:
    """The E.164 form of a number that can receive SMS (valid, not a landline or premium line), else None."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) in _NOT_SMS:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sender_id_problems(sender: str) -> list[str]:
    """Sender id rules: alphanumeric up to 11 characters with a letter, a 3–8 digit short code, or a
    valid long code (a phone number in international form). Digits and letters are ASCII only."""
    digits = sender[1:] if sender.startswith("+") else sender
    if _ASCII_DIGITS.fullmatch(digits):
        if not sender.startswith("+") and 3 <= len(digits) <= 8:
            return []
        if _valid_any(digits):
            return []
        return [f"sender id {sender!r}: a numeric sender id is a 3–8 digit short code or a valid international long code"]
    if not _ALPHA_SENDER.fullmatch(sender) or not any(c.isalpha() for c in sender):
        return [f"sender id {sender!r}: an alphanumeric sender id has 1–11 letters, digits, spaces or . & _ - and at least one letter"]
    return []


def _valid_any(digits: str) -> bool:
    """Whether ``+digits`` is a valid phone number of any type (a long code may be a landline)."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse("+" + digits))
    except phonenumbers.NumberParseException:
        return False


@dataclass(frozen=True, slots=True)
class DltTemplate:
    """A DLT content template: id, category and body, where only ``{#var#}`` slots may vary."""

    id: str
    category: str
    body: str

    @property
    def pattern(self) -> re.Pattern[str]:
        """A regex over a body: literal text exactly, each ``{#var#}`` one capture group."""
        parts = self.body.split(DLT_VAR)
        return re.compile("(.*?)".join(re.escape(p) for p in parts), re.S)

    def match(self, text: str) -> re.Match[str] | None:
        """The match of ``text`` against the template, or None."""
        return self.pattern.fullmatch(text)


def dlt_header_problems(sender: str, category: str | None = None) -> list[str]:
    """India DLT header rules: numeric, 3–9 digits, for promotional templates; alphabetic, 3–9 letters, for
    the others (service explicit/implicit, transactional). Without a category: either form."""
    numeric, alpha = _DLT_NUMERIC.fullmatch(sender), _DLT_ALPHA.fullmatch(sender)
    if category is None:
        if numeric or alpha:
            return []
        return [f"a DLT header is 3–9 digits (promotional) or 3–9 letters (service); {sender!r} is neither"]
    if category == "promotional":
        return [] if numeric else [f"DLT promotional templates need a numeric header of 3–9 digits; {sender!r} is not"]
    return [] if alpha else [f"DLT {category} templates need an alphabetic header of 3–9 letters; {sender!r} is not"]


class Sms:
    """The SMS channel: validation, reachability over ``phone``, and a gateway request as payload."""

    name = "sms"
    kind = "direct"
    required_tags = ("optout",)
    required_tag_fields = ("body",)
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["body"],
        "properties": {
            "body": {"type": "string", "minLength": 1, "description": "Liquid text; must contain {{ optout }}"},
            "sender_id": {"type": "string", "description": "alphanumeric (≤11) or a short/long code"},
            "dlt_template_id": {"type": "string", "description": "DLT content template id (India)"},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.01)
        self.max_segments = setting.whole(settings, "max_segments", 6)
        self.short_link_length = setting.whole(settings, "short_link_length", 23)
        self.region = setting.region(settings)
        self._reach = ContactReach(self.name, "phone", kinds=SMS_TYPE_NAMES, valid=lambda v: sms_number(v, self.region) is not None,
                                   rule="a mobile number in international form (+ and country code); "
                                        "landlines, toll-free and premium numbers cannot take SMS")
        self.tags = {"optout": setting.text(settings, "optout_text", "Reply STOP to opt out")}
        dlt = setting.mapping(settings, "dlt", of="entity_id and templates") or None
        self.dlt_entity_id = setting.text(dlt, "entity_id", where="dlt.") if dlt else None
        self.dlt_templates = _dlt_templates(dlt) if dlt is not None else None

    def sender(self, creative: Creative, message: Message) -> str | None:
        """The sender id: the creative's, else the message's delivery settings'."""
        return creative.content.get("sender_id") or message.delivery.senders.get("sms", {}).get("sender_id")

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"body": "{{ customer.first_name | default: 'Hi' }}, summer sale: 20% off everything until Sunday. {{ optout }}"}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Body present, known keys, sender id rules, segments within the maximum, and DLT rules when on."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "SMS")
        body = content.get("body")
        if not isinstance(body, str) or not body.strip():
            return [*issues, Issue("body", "required", "the SMS body is required")]
        sender = self.sender(creative, message)
        if self.dlt_templates is not None:  # DLT headers replace the general sender id rules
            issues += self._length_issues(body, message)
            return issues + self._dlt_issues(body, sender, creative, message)
        if sender is not None:
            issues += [Issue("sender_id", "sender_id", m) for m in sender_id_problems(str(sender))]
        return issues + self._length_issues(body, message)

    def _length_issues(self, body: str, message: Message) -> list[Issue]:
        enc, units, parts = segments(self.estimated_text(body, message))
        if parts > self.max_segments:
            return [Issue("body", "too_long", f"the body is about {units} {enc} characters, {parts} segments; "
                          f"the maximum is {self.max_segments} segments")]
        out = []
        if enc == "UCS-2":
            odd = "".join(dict.fromkeys(c for c in _TAG.sub("", body) if c not in GSM7_BASIC and c not in GSM7_EXTENDED))
            out.append(Issue("body", "unicode", f"the body needs UCS-2 (70 characters per SMS) because of {odd[:10]!r}", "warning"))
        if parts > 1:
            out.append(Issue("body", "segments", f"the body is about {units} {enc} characters: {parts} segments, each billed", "warning"))
        return out

    @property
    def optout_text(self) -> str:
        """The org's opt-out text (the ``optout`` tag's value): what every rendered SMS must contain."""
        return self.tags["optout"] or ""

    def estimated_text(self, body: str, message: Message) -> str:
        """The body as it will be counted: the opt-out tag as its text, other tags at an estimate, and
        tracked links at their shortened length when the message uses tiny URLs."""
        text = _OPTOUT.sub(lambda _: self.optout_text, body)
        return self.as_sent(_TAG.sub("x" * _TAG_ESTIMATE, text), message.delivery.tiny_url)

    def as_sent(self, text: str, tiny_url: bool) -> str:
        """``text`` as the gateway sends it: tracked links at their shortened length when tiny URLs are on."""
        return _URL.sub("x" * self.short_link_length, text) if tiny_url else text

    def _template_id(self, creative: Creative, message: Message) -> str | None:
        return creative.content.get("dlt_template_id") or message.delivery.senders.get("sms", {}).get("dlt_template_id")

    def _dlt_issues(self, body: str, sender: str | None, creative: Creative, message: Message) -> list[Issue]:
        assert self.dlt_templates is not None
        text = _OPTOUT.sub(lambda _: self.optout_text, body)
        wanted = self._template_id(creative, message)
        if wanted is not None and wanted not in self.dlt_templates:
            return [Issue("dlt_template_id", "dlt_unknown_template", f"DLT template {wanted!r} is not registered")]
        candidates = [self.dlt_templates[wanted]] if wanted else list(self.dlt_templates.values())
        matched = next(((t, m) for t in candidates if (m := t.match(text))), None)
        if sender is None:
            issues = [Issue("sender_id", "required", "DLT mode needs a registered sender id (header)")]
        else:
            category = matched[0].category if matched else None
            issues = [Issue("sender_id", "dlt_header", m) for m in dlt_header_problems(str(sender), category)]
        if matched is None:
            which = f"DLT template {wanted}" if wanted else "any registered DLT template"
            return [Issue("body", "dlt_template_mismatch",
                          f"the body does not match {which}; only {DLT_VAR} slots may vary (spaces count)"), *issues]
        template, match = matched
        slots = [match.span(i) for i in range(1, (match.lastindex or 0) + 1)]
        for n, (a, b) in enumerate(slots, 1):
            literal = len(self.as_sent(_TAG.sub("", text[a:b]), message.delivery.tiny_url))
            if literal > DLT_VAR_MAX:
                issues.append(Issue("body", "dlt_var_too_long", f"{DLT_VAR} slot {n} of template {template.id} holds "
                                    f"{literal} characters of fixed text; a variable carries at most {DLT_VAR_MAX}"))
        for url in _URL.finditer(text):
            if not any(a <= url.start() and url.end() <= b for a, b in slots):
                issues.append(Issue("body", "dlt_link_outside_var",
                                    f"the link {url.group(0)} must sit inside a {DLT_VAR} slot of template {template.id}"))
        return issues

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """No phone → contact_unavailable; a recorded unreachable status wins; a number that cannot take SMS
        → invalid; DND (``customer.dnd``) → ``dnd`` unless the message may send to DND; else the recorded status."""
        status = self._reach.of(customer)
        if status.reachable and customer.attributes.get("dnd") is True and not message.delivery.send_to_dnd:
            return Reachability.DND
        return status

    def reachability_reason(self, customer: Customer, message: Message) -> str | None:
        """Why the customer cannot get this SMS (None when they can), for the trace."""
        if self.reachability(customer, message) is Reachability.DND:
            return "on the do-not-disturb registry (customer.dnd) and the message does not send to DND"
        return self._reach.reason(customer)

    def reachability_expr(self, message: Message) -> pl.Expr:
        """``reachability`` over a frame with ``customer.phone``, ``customer.subscription.sms``, ``customer.dnd``."""
        status = self._reach.expr()
        dnd = fact_column("customer.dnd", pl.Boolean).eq_missing(True) & pl.lit(not message.delivery.send_to_dnd)
        return pl.when(status.is_in(_REACHABLE) & dnd).then(pl.lit(Reachability.DND.value)).otherwise(status)

    def reachable_expr(self, message: Message) -> pl.Expr:
        """Whether ``reachability_expr`` is a reachable status, one Boolean per row (the bulk plan's form):
        reachable over ``phone`` (the reader's line type trusted) and not held back by DND."""
        dnd = fact_column("customer.dnd", pl.Boolean, scalar_if_missing=True).eq_missing(True)
        return self._reach.reachable_expr() & ~(dnd & pl.lit(not message.delivery.send_to_dnd))

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the gateway request to ``payload["to"]`` through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("to"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """A gateway request: to (E.164), from, text, encoding and segments (counted on the text as sent,
        tracked links shortened when the message uses tiny URLs); DLT ids when DLT mode is on."""
        text = render_content(creative.content["body"], context)
        delivery = context["delivery"]  # engine.rendering.render_context always sets sender and tiny_url
        enc, units, parts = segments(self.as_sent(text, delivery["tiny_url"]))
        defaults = delivery["sender"]
        sender = creative.content.get("sender_id") or defaults.get("sender_id")
        phone = context["customer"].get("phone")
        payload: dict[str, Any] = {"to": sms_number(str(phone), self.region) or phone, "from": sender,
                                   "text": text, "encoding": enc, "units": units, "segments": parts}
        if self.dlt_templates is not None:
            wanted = creative.content.get("dlt_template_id") or defaults.get("dlt_template_id")
            template = self.dlt_templates.get(wanted) if wanted else next(
                (t for t in self.dlt_templates.values() if t.match(text)), None)
            payload["dlt"] = {"entity_id": self.dlt_entity_id, "template_id": template.id if template else None}
        return payload

    def compliance(self, payload: Mapping[str, Any], context: Mapping[str, Any], *, preview: bool = True) -> list[Issue]:
        """What the rendered SMS breaks: the opt-out text missing, more segments than allowed, and in DLT mode
        a text no registered template matches or a variable longer than 30 characters."""
        text = payload["text"]  # the payload is this channel's own ``render`` output
        issues = []
        if self.optout_text not in text:
            issues.append(Issue("text", "compliance", f"the rendered text lacks the opt-out text {self.tags['optout']!r}"))
        if payload["segments"] > self.max_segments:
            issues.append(Issue("text", "too_long", f"the rendered text is {payload['units']} {payload['encoding']} "
                                f"characters, {payload['segments']} segments; the maximum is {self.max_segments}"))
        if self.dlt_templates is not None:
            issues += self._dlt_rendered_issues(text, payload, context["delivery"]["tiny_url"])
        return issues

    def _dlt_rendered_issues(self, text: str, payload: Mapping[str, Any], tiny_url: bool) -> list[Issue]:
        assert self.dlt_templates is not None
        template = self.dlt_templates.get(payload["dlt"]["template_id"])  # render always names it (or None)
        match = template.match(text) if template else None
        if template is None or match is None:
            return [Issue("text", "dlt_template_mismatch", "the rendered text matches no registered DLT template "
                          "(customer data may not change the fixed text)")]
        lengths = [(n, value, len(self.as_sent(value, tiny_url))) for n, value in enumerate(match.groups(), 1)]
        return [Issue("text", "dlt_var_too_long", f"{DLT_VAR} {n} of template {template.id} renders to {size} "
                      f"characters; at most {DLT_VAR_MAX}: {value!r}") for n, value, size in lengths if size > DLT_VAR_MAX]


def _dlt_templates(dlt: Mapping[str, Any]) -> dict[str, DltTemplate]:
    """The ``dlt.templates`` settings: a list of ``{id, category, body}``, each category a DLT one."""
    listed = dlt.get("templates") or []
    if not isinstance(listed, list) or not all(isinstance(t, Mapping) for t in listed):
        raise setting.refuse("templates", "a list of {id, category, body} mappings", listed, "dlt.")
    out = {}
    for i, t in enumerate(listed):
        where = f"dlt.templates[{i}]."
        tid, body = setting.text(t, "id", where=where), setting.text(t, "body", where=where)
        category = str(t.get("category", "")).lower()
        if category not in DLT_CATEGORIES:
            raise setting.refuse("category", f"one of {', '.join(DLT_CATEGORIES)}", t.get("category"), where)
        if tid is None or body is None:
            raise setting.refuse("id" if tid is None else "body", "a non-empty text", None, where)
        out[tid] = DltTemplate(tid, category, body)
    return out


@hookimpl
def register_channels(register, settings):
    """Register the SMS channel."""
    register(Sms(settings))


@hookimpl
def register_contact_fields(register, settings):
    """Register ``phone`` (read in the ``default_region`` setting when numbers have no ``+``)."""
    register(ContactField("phone", "phone number, E.164", normalise=phone_number, normalise_column=phone_numbers,
                          handle_type=phone_line_type, region=setting.region(settings),
                          rule="a valid phone number in international form (+ and country code)"))
