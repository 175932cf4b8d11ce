"""Coupons: one coupon series per message, with an in-process ledger per series.

Settings (``incentive.settings``):

* ``source``: ``generated`` (default) | ``list`` (uploaded ``codes``) | ``common`` (one ``code`` for all)
* ``alphabet``: ``alphanumeric`` (default; no ambiguous 0/O/1/I/L) | ``numeric``; ``length`` 4–32 (default 8)
* ``expiry``: exactly one of ``{date: YYYY-MM-DD}``, ``{days: N}`` (after issue), ``{with_campaign: true}``
* ``cap``: the most codes the series may issue (required for ``generated`` when the code space is small)
* ``series``: the ledger key (default: the message id), so two messages may share one series

A preview (``ctx.preview``) shows a deterministic sample code and reserves nothing. At most one code is
reserved per customer and message: reserving again returns the same grant. The ledger lives in this
process only; persistence comes with the storage issue (``CouponLedger`` is the seam it will replace).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from engine import Customer, EngineError, EvaluationContext, Issue, Message, hookimpl

UNAMBIGUOUS = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
DIGITS = "0123456789"
SOURCES = ("generated", "list", "common")
EXPIRY_KEYS = ("date", "days", "with_campaign")


class CouponsExhausted(EngineError):
    """The series cannot issue another code (cap reached, list used up, or code space full)."""


def alphabet_of(spec: Mapping[str, Any]) -> str:
    """The characters generated codes are made of."""
    return DIGITS if spec.get("alphabet") == "numeric" else UNAMBIGUOUS


def code_space(spec: Mapping[str, Any]) -> int:
    """How many distinct codes the series can produce (``None`` settings use the defaults)."""
    source = spec.get("source", "generated")
    if source == "common":
        return 1
    if source == "list":
        return len(set(spec.get("codes") or ()))
    return len(alphabet_of(spec)) ** int(spec.get("length", 8))


def expiry_date(spec: Mapping[str, Any], message: Message, issued: date) -> date | None:
    """The expiry of a code issued on ``issued``: a fixed date, N days later, or the campaign's end."""
    expiry = spec.get("expiry") or {}
    if "date" in expiry:
        return date.fromisoformat(str(expiry["date"]))
    if "days" in expiry:
        return issued + timedelta(days=int(expiry["days"]))
    if expiry.get("with_campaign"):
        return message.campaign.ends
    return None


@dataclass
class CouponLedger:
    """Codes taken from one series: reservations per (message, customer), issued codes, the cap. Thread-safe.

    In-process only; a later storage issue persists it (same methods, database rows).
    """

    key: str
    cap: int | None = None
    used: set[str] = field(default_factory=set)
    grants: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self, message_id: str, customer_id: str, make_code: Any) -> dict[str, Any]:
        """The grant of this customer for this message, creating it with ``make_code(used)`` if new."""
        with self.lock:
            existing = self.grants.get((message_id, customer_id))
            if existing is not None:
                return existing
            if self.cap is not None and len(self.grants) >= self.cap:
                raise CouponsExhausted(f"coupon series {self.key!r} reached its cap of {self.cap} codes")
            code = make_code(self.used)
            grant = {"code": code, "series": self.key, "message": message_id, "customer": customer_id,
                     "status": "reserved"}
            self.grants[(message_id, customer_id)] = grant
            return grant

    def issue(self, message_id: str, customer_id: str) -> dict[str, Any]:
        """Mark a reservation as issued (sent); issuing twice is harmless."""
        with self.lock:
            grant = self.grants.get((message_id, customer_id))
            if grant is None:
                raise KeyError(f"no coupon reserved for customer {customer_id!r} in series {self.key!r}")
            grant["status"] = "issued"
            return grant

    def release(self, message_id: str, customer_id: str, code: str, shared: bool) -> bool:
        """Give back an unsent reservation (its code returns to the pool); issued codes stay. True if released."""
        with self.lock:
            grant = self.grants.get((message_id, customer_id))
            if grant is None or grant["status"] != "reserved" or grant["code"] != code:
                return False
            del self.grants[(message_id, customer_id)]
            if not shared:
                self.used.discard(code)
            return True

    @property
    def outstanding(self) -> int:
        """Codes reserved or issued."""
        with self.lock:
            return len(self.grants)


class Coupon:
    """The ``coupon`` incentive type (see the module docstring for its settings)."""

    kind = "coupon"
    tags = ("coupon.code", "coupon.expires_on")
    spec_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "source": {"enum": list(SOURCES)},
            "alphabet": {"enum": ["alphanumeric", "numeric"]},
            "length": {"type": "integer", "minimum": 4, "maximum": 32},
            "codes": {"type": "array", "items": {"type": "string"}},
            "code": {"type": "string"},
            "expiry": {"type": "object"},
            "cap": {"type": "integer", "minimum": 1},
            "series": {"type": "string"},
        },
        "additionalProperties": False,
    }

    def __init__(self) -> None:
        self._ledgers: dict[str, CouponLedger] = {}
        self._lock = threading.Lock()

    def validate(self, spec: Mapping[str, Any], message: Message) -> list[Issue]:
        """Check the series settings; paths are inside ``incentive.settings``."""
        return check_series(spec, message)

    def sample_specs(self) -> list[Mapping[str, Any]]:
        """Valid series settings, one per code source (for the contract kit and the docs)."""
        return [{"source": "generated", "alphabet": "alphanumeric", "length": 8, "cap": 10_000,
                 "expiry": {"days": 14}},
                {"source": "list", "codes": ["SUMMER-A1", "SUMMER-B2", "SUMMER-C3"], "expiry": {"with_campaign": True}},
                {"source": "common", "code": "SALE20", "expiry": {"date": "2026-12-31"}}]

    def sample_invalid_specs(self) -> list[tuple[Mapping[str, Any], str]]:
        """Invalid settings and the path each is rejected at."""
        return [({"alphabet": "numeric", "length": 4, "cap": 20_000, "expiry": {"days": 7}}, "cap"),
                ({"source": "list", "codes": ["A1", "A1"], "expiry": {"days": 7}}, "codes[1]"),
                ({"source": "common", "expiry": {"days": 7}}, "code"),
                ({"expiry": {"days": 0}}, "expiry.days")]

    def ledger(self, spec: Mapping[str, Any], message: Message) -> CouponLedger:
        """The ledger of the series ``spec`` describes (created on first use)."""
        key = str(spec.get("series") or message.id)
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is None:
                cap = spec.get("cap")
                ledger = self._ledgers[key] = CouponLedger(key, int(cap) if cap else None)
            return ledger

    def reservations(self, spec: Mapping[str, Any], message: Message) -> int:
        """How many codes the series has reserved or issued (the contract kit checks previews take none)."""
        return self.ledger(spec, message).outstanding

    def reserve(self, spec: Mapping[str, Any], customer: Customer, ctx: EvaluationContext) -> Mapping[str, Any]:
        """This customer's code and expiry; a preview derives a sample code from the ids and takes nothing.

        Raises ``CouponsExhausted`` when the series has no code left for a real reservation.
        """
        message = ctx.message
        expires = expiry_date(spec, message, ctx.at.date())
        if ctx.preview:
            return {"code": _sample_code(spec, message.id, customer.id), "expires_on": _iso(expires),
                    "preview": True}
        grant = self.ledger(spec, message).reserve(message.id, customer.id, lambda used: _take(spec, used))
        return {**grant, "expires_on": _iso(expires), "preview": False}

    async def issue(self, spec: Mapping[str, Any], grant: Mapping[str, Any], message: Message,
                    at: datetime) -> Mapping[str, Any]:
        """Mark the reserved code as issued at ``at`` (the send); ``N days`` expiry counts from here."""
        ledger = self.ledger(spec, message)
        issued = ledger.issue(str(grant["message"]), str(grant["customer"]))
        return {**issued, "issued_on": at.date().isoformat(),
                "expires_on": _iso(expiry_date(spec, message, at.date()))}

    def release(self, spec: Mapping[str, Any], grant: Mapping[str, Any]) -> None:
        """Return an unsent code to the series (a failed send). Previews and issued codes are left alone."""
        if grant.get("preview", True) or "series" not in grant:
            return
        with self._lock:
            ledger = self._ledgers.get(str(grant["series"]))
        if ledger is not None:
            shared = spec.get("source") == "common"
            ledger.release(str(grant["message"]), str(grant["customer"]), str(grant["code"]), shared)


def check_series(spec: Mapping[str, Any], message: Message) -> list[Issue]:
    """Every problem with a series' settings, each naming its field."""
    issues = [Issue(k, "unknown_key", f"unknown coupon setting {k!r}") for k in spec
              if k not in Coupon.spec_schema["properties"]]
    source = spec.get("source", "generated")
    if source not in SOURCES:
        return [*issues, Issue("source", "invalid", f"source is one of {', '.join(SOURCES)}, not {source!r}")]
    cap = spec.get("cap")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        issues.append(Issue("cap", "invalid", "cap is a whole number of codes, at least 1"))
        cap = None
    if source == "generated":
        issues += _generated_issues(spec, cap)
    elif source == "list":
        issues += _list_issues(spec, cap)
    else:
        code = spec.get("code")
        if not isinstance(code, str) or not code.strip() or code != code.strip() or " " in code:
            issues.append(Issue("code", "required", "a common-code series needs the code, without spaces"))
    return issues + _expiry_issues(spec, message)


def _generated_issues(spec: Mapping[str, Any], cap: int | None) -> list[Issue]:
    if spec.get("alphabet", "alphanumeric") not in ("alphanumeric", "numeric"):
        return [Issue("alphabet", "invalid", "alphabet is alphanumeric or numeric")]
    length = spec.get("length", 8)
    if not isinstance(length, int) or isinstance(length, bool) or not 4 <= length <= 32:
        return [Issue("length", "invalid", "length is a whole number from 4 to 32")]
    space = code_space(spec)
    if cap is not None and cap > space:
        return [Issue("cap", "code_space_too_small",
                      f"{spec.get('alphabet', 'alphanumeric')} codes of length {length} allow only {space} "
                      f"distinct codes, fewer than the cap of {cap}; use longer codes or the alphanumeric alphabet")]
    if cap is not None and cap * 100 > space:
        return [Issue("cap", "guessable_codes", f"the cap of {cap} is more than 1% of the {space} possible codes: "
                      "codes become guessable; use longer codes", "warning")]
    return []


def _list_issues(spec: Mapping[str, Any], cap: int | None) -> list[Issue]:
    codes = spec.get("codes")
    if not isinstance(codes, list) or not codes:
        return [Issue("codes", "required", "an uploaded-list series needs a non-empty list of codes")]
    issues, seen = [], {}
    for i, code in enumerate(codes):
        if not isinstance(code, str) or not code.strip():
            issues.append(Issue(f"codes[{i}]", "invalid", "a coupon code is a non-empty string"))
        elif code in seen:
            issues.append(Issue(f"codes[{i}]", "duplicate", f"code {code!r} repeats codes[{seen[code]}]"))
        else:
            seen[code] = i
    if cap is not None and cap > len(seen):
        issues.append(Issue("cap", "cap_above_codes", f"the cap of {cap} exceeds the {len(seen)} uploaded codes",
                            "warning"))
    return issues


def _expiry_issues(spec: Mapping[str, Any], message: Message) -> list[Issue]:
    expiry = spec.get("expiry")
    if expiry is None:
        return [Issue("expiry", "no_expiry", "the codes never expire; set a date, days or with_campaign", "warning")]
    keys = [k for k in expiry if k in EXPIRY_KEYS] if isinstance(expiry, Mapping) else []
    if not isinstance(expiry, Mapping) or len(keys) != 1 or len(expiry) != 1:
        return [Issue("expiry", "invalid", "expiry is exactly one of {date}, {days} or {with_campaign: true}")]
    value, campaign = expiry[keys[0]], message.campaign
    if keys[0] == "date":
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            return [Issue("expiry.date", "invalid", f"expected a date YYYY-MM-DD, got {value!r}")]
        if campaign.starts and day < campaign.starts:
            return [Issue("expiry.date", "before_campaign", f"codes would expire on {day}, before the campaign "
                          f"starts on {campaign.starts}")]
    elif keys[0] == "days":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return [Issue("expiry.days", "invalid", "expiry.days is a whole number of days, at least 1")]
    elif value is not True:
        return [Issue("expiry.with_campaign", "invalid", "with_campaign is true (or use date or days)")]
    elif campaign.ends is None:
        return [Issue("expiry.with_campaign", "no_campaign_end", "the campaign has no end date to expire with")]
    return []


def _take(spec: Mapping[str, Any], used: set[str]) -> str:
    """A code nobody holds yet (``used`` is updated); ``CouponsExhausted`` when none is left."""
    source = spec.get("source", "generated")
    if source == "common":
        return str(spec["code"])
    if source == "list":
        for code in spec.get("codes") or ():
            if code not in used:
                used.add(code)
                return code
        raise CouponsExhausted("every uploaded coupon code has been reserved")
    alphabet, length = alphabet_of(spec), int(spec.get("length", 8))
    if len(used) >= len(alphabet) ** length:
        raise CouponsExhausted(f"all {len(alphabet) ** length} codes of length {length} are taken")
    while True:  # rejection sampling; validation keeps the cap well below the code space
        code = "".join(secrets.choice(alphabet) for _ in range(length))
        if code not in used:
            used.add(code)
            return code


def _sample_code(spec: Mapping[str, Any], message_id: str, customer_id: str) -> str:
    """A deterministic preview code of the right shape (never reserved, may repeat)."""
    source = spec.get("source", "generated")
    digest = hashlib.sha256(f"{message_id}:{customer_id}".encode()).digest()
    if source == "common":
        return str(spec.get("code", ""))
    if source == "list":
        codes = list(spec.get("codes") or ())
        return codes[int.from_bytes(digest[:8], "big") % len(codes)] if codes else ""
    alphabet, length = alphabet_of(spec), int(spec.get("length", 8))
    stream = digest * (length // len(digest) + 1)
    return "".join(alphabet[b % len(alphabet)] for b in stream[:length])


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


@hookimpl
def register_incentives(register):
    """Register the coupon incentive type."""
    register(Coupon())
