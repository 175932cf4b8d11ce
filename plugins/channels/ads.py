"""X-Engage ad channels: facebook, instagram (Meta Custom Audiences) and google, youtube (Google Customer
Match). Nothing is sent to a customer: the audience is exported as hashed identifiers.

Matching rules (SHA-256 hex of the normalised value):

* e-mail, every platform: trimmed and lower-cased (and syntactically valid);
* phone, Meta: E.164 digits without ``+`` (country code, no leading zeros: ``919812345678``);
* phone, Google: E.164 with ``+`` (``+919812345678``), as Customer Match requires.

Settings (plugin ``plugins.channels.ads``): ``default_region`` (numbers stored without ``+``), and one block per
channel, e.g. ``google: {min_audience: 1000, cost: 0.0}``. Defaults: Google/YouTube need at least 1,000
members (Customer Match), Meta 100 (its minimum for an audience to deliver).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from engine import (
    ContactField,
    Creative,
    Customer,
    Issue,
    Message,
    Reachability,
    SendContext,
    SendResult,
    check_each,
    e164_number,
    email_address,
    email_addresses,
    email_handle_type,
    fact_column,
    hookimpl,
    lazy,
    nonempty,
    ordered_reachability,
    ordered_reachability_expr,
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

email_validator = lazy("email_validator")  # imported on first use (start-up)

PLATFORMS = {"facebook": "meta", "instagram": "meta", "google": "google", "youtube": "google"}
MIN_AUDIENCE = {"meta": 100, "google": 1000}
BATCH = 10_000
MEMBERSHIP_DAYS_MAX = 540


def sha256(value: str) -> str:
    """Lower-case hex SHA-256 of the UTF-8 bytes of ``value``."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@lru_cache(maxsize=65536)
def normal_email(value: str) -> str | None:
    """The address trimmed and lower-cased, when it is a valid e-mail address; else None."""
    address = value.strip().lower()
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return address


@dataclass(frozen=True)
class AudienceExport:
    """An audience export: one row of hashed identifiers per member, the platform request bodies (batches of
    10,000), the issues (an error blocks the upload), and how many customers were skipped and why."""

    channel: str
    rows: tuple[Mapping[str, str | None], ...]
    requests: tuple[Mapping[str, Any], ...]
    issues: tuple[Issue, ...] = ()
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no issue is an error."""
        return not any(i.is_error for i in self.issues)


class AdChannel:
    """One ad platform as a ``kind="ad"`` channel: validation of the audience settings, reachability (a valid
    e-mail or phone to match on), a per-member identifier row as render output, and :meth:`export`."""

    kind = "ad"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}

    def __init__(self, name: str, settings: Mapping[str, Any], region: str | None = None):
        self.name = name
        self.platform = PLATFORMS[name]
        self.region = region
        self.cost = setting.number(settings, "cost", 0.0, where=f"{name}.")
        self.min_audience = setting.whole(settings, "min_audience", MIN_AUDIENCE[self.platform], where=f"{name}.")
        props: dict[str, Any] = {"audience_name": {"type": "string", "minLength": 1, "maxLength": 200},
                                 "description": {"type": "string"}}
        if self.platform == "google":
            props["membership_days"] = {"type": "integer", "minimum": 1, "maximum": MEMBERSHIP_DAYS_MAX}
        self.creative_schema: Mapping[str, Any] = {
            "type": "object", "required": ["audience_name"], "properties": props, "additionalProperties": False}

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"audience_name": "Summer sale 2026"}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """The audience name is required (≤200 characters); Google membership is 1–540 days."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], f"{self.name} audience")
        name = content.get("audience_name")
        if not isinstance(name, str) or not name.strip():
            issues.append(Issue("audience_name", "required", f"the {self.name} audience_name is required"))
        elif len(name) > 200:
            issues.append(Issue("audience_name", "too_long", "the audience_name has more than 200 characters"))
        days = content.get("membership_days")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MEMBERSHIP_DAYS_MAX):
            issues.append(Issue("membership_days", "range", f"membership_days is a whole number from 1 to {MEMBERSHIP_DAYS_MAX}"))
        return issues

    def identifiers(self, customer: Customer | Mapping[str, Any]) -> dict[str, str | None]:
        """The hashed ``email`` and ``phone`` of one customer (None where missing or invalid)."""
        attrs = customer.attributes if isinstance(customer, Customer) else customer
        email = normal_email(str(attrs["email"])) if attrs.get("email") else None
        phone = e164_number(str(attrs["phone"]), self.region) if attrs.get("phone") else None
        if phone is not None and self.platform == "meta":
            phone = phone.lstrip("+")
        return {"email": sha256(email) if email else None, "phone": sha256(phone) if phone else None}

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """Neither e-mail nor phone → contact_unavailable; a recorded unreachable status (no ad consent) wins;
        neither valid → invalid; else the recorded status."""
        attrs = customer.attributes
        return ordered_reachability(customer, self.name, bool(attrs.get("email") or attrs.get("phone")),
                                    lambda: any(self.identifiers(customer).values()))

    def reachability_expr(self, message: Message) -> pl.Expr:
        """``reachability`` over ``customer.email``, ``customer.phone`` and ``customer.subscription.<name>``."""
        email, phone = fact_column("customer.email"), fact_column("customer.phone")
        region = self.region
        ok_email = check_each(lambda v: normal_email(v) is not None)
        ok_phone = check_each(lambda v: e164_number(v, region) is not None)
        return ordered_reachability_expr(self.name, nonempty(email) | nonempty(phone), ok_email(email) | ok_phone(phone))

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Add one member to the audience ``payload["audience"]``: the platform's upload request for one row of
        hashed identifiers (as :meth:`export` builds per batch), through ``ctx.transport``."""
        ids = payload.get("identifiers") or {}
        if not any(ids.values()):
            return SendResult.permanent(f"{self.name}: the member has no hashed e-mail or phone to match on")
        return await transport_send(self.name, payload, ctx, to=payload.get("audience"),
                                    body={"audience": payload.get("audience"), **self._request((ids,))})

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """One member of the audience: the audience name and the hashed identifiers."""
        audience = render_content(creative.content.get("audience_name", ""), context)
        return {"audience": audience, "identifiers": self.identifiers(context["customer"])}

    def export(self, customers: Iterable[Customer], message: Message) -> AudienceExport:
        """The audience upload for ``message``: reachable customers only, de-duplicated rows, the platform's
        request bodies, and an error when the audience is below the platform's minimum size."""
        rows: dict[tuple[str | None, str | None], dict[str, str | None]] = {}
        skipped: dict[str, int] = {}
        for customer in customers:
            status = self.reachability(customer, message)
            if not status.reachable:
                skipped[status.value] = skipped.get(status.value, 0) + 1
                continue
            row = self.identifiers(customer)
            rows.setdefault((row["email"], row["phone"]), row)
        members = tuple(rows.values())
        issues = []
        if len(members) < self.min_audience:
            platform = "Google Customer Match" if self.platform == "google" else "Meta Custom Audiences"
            issues.append(Issue("audience", "audience_too_small",
                                f"{self.name}: the audience has {len(members)} members; {platform} needs at least {self.min_audience:,}"))
        requests = tuple(self._request(members[i:i + BATCH]) for i in range(0, len(members), BATCH))
        return AudienceExport(self.name, members, requests, tuple(issues), skipped)

    def _request(self, rows: tuple[Mapping[str, str | None], ...]) -> Mapping[str, Any]:
        if self.platform == "meta":
            return {"payload": {"schema": ["EMAIL", "PHONE"],
                                "data": [[r["email"] or "", r["phone"] or ""] for r in rows]}}
        operations = []
        for r in rows:
            ids = ([{"hashedEmail": r["email"]}] if r["email"] else []) + ([{"hashedPhoneNumber": r["phone"]}] if r["phone"] else [])
            operations.append({"create": {"userIdentifiers": ids}})
        return {"operations": operations, "enablePartialFailure": True}


@hookimpl
def register_channels(register, settings):
    """Register facebook, instagram, google and youtube as ad channels."""
    region = setting.region(settings)
    for name in PLATFORMS:
        register(AdChannel(name, setting.mapping(settings, name, of="cost and min_audience") or {}, region))


@hookimpl
def register_contact_fields(register, settings):
    """Register the handles ad platforms match on: ``email`` and ``phone`` (read in ``default_region``)."""
    register(ContactField("email", "e-mail address", normalise=email_address, normalise_column=email_addresses,
                          handle_type=email_handle_type, rule="name@domain.tld: one @, no spaces, a domain name with a dot"))
    register(ContactField("phone", "phone number, E.164", normalise=phone_number, normalise_column=phone_numbers,
                          handle_type=phone_line_type, region=setting.region(settings),
                          rule="a valid phone number in international form (+ and country code)"))
