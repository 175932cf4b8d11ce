"""Coupons: one coupon series per message, with an in-process ledger per series.

Settings (``incentive.settings``):

* ``source``: ``generated`` (default) | ``list`` (uploaded ``codes``) | ``common`` (one ``code`` for all)
* ``alphabet``: ``alphanumeric`` (default; no ambiguous 0/O/1/I/L) | ``numeric``; ``length`` 4–32 (default 8)
* ``expiry``: exactly one of ``{date: YYYY-MM-DD}`` (not before the send), ``{days: N}`` (N days after
  each recipient's send), ``{with_campaign: true}`` (the campaign's end)
* ``cap``: the most codes the series may issue
* ``series``: the ledger key (default: the message id), so two messages may share one series; they must
  then agree on its source, alphabet, length, codes and cap

A preview (``ctx.preview``) shows a deterministic sample code and reserves nothing, but counts what it
would take on a per-run :class:`PreviewTally`, so recipients beyond the cap (or beyond the codes left) are
refused in the same order as in a real run. At most one code is reserved per customer and message:
reserving again returns the same grant. The ledger lives in this process only; persistence comes with the
storage issue (``CouponLedger`` is the seam it will replace).
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


#: the settings every message sharing a series must agree on (expiry may differ per message)
SHARED_SETTINGS = ("source", "alphabet", "length", "codes", "code", "cap")


class CouponsExhausted(EngineError):
    """The series cannot issue another code (cap reached, list used up, or code space full)."""


class CouponExpired(EngineError):
    """The code would expire (fixed date) before this recipient's send."""


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


def shared_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The series settings that messages sharing the series must agree on (defaults filled in)."""
    source = spec.get("source", "generated")
    out: dict[str, Any] = {"source": source, "cap": spec.get("cap")}
    if source == "generated":
        out.update(alphabet=spec.get("alphabet", "alphanumeric"), length=spec.get("length", 8))
    elif source == "list":
        out["codes"] = list(spec.get("codes") or ())
    else:
        out["code"] = spec.get("code")
    return out


def series_key(spec: Mapping[str, Any], message: Message) -> str:
    """The ledger key of the series: ``series``, else the message id."""
    return str(spec.get("series") or message.id)


def exhausted_text(spec: Mapping[str, Any]) -> str:
    """Why a series whose codes are all taken cannot issue another."""
    if spec.get("source", "generated") == "list":
        return "every uploaded coupon code has been reserved"
    length = int(spec.get("length", 8))
    return f"all {code_space(spec)} codes of length {length} are taken"


def expiry_date(spec: Mapping[str, Any], message: Message, issued: date) -> date | None:
    """The expiry of a code sent on ``issued``: a fixed date, N days later, or the campaign's end."""
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
    #: how many distinct codes the series has (``None``: unlimited, a common code)
    space: int | None = None
    #: why the series is empty once ``space`` codes are taken
    empty_text: str = "every code of the series is taken"
    #: the message that created the series, and its shared settings (see :func:`shared_settings`)
    owner: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    grants: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_series(cls, spec: Mapping[str, Any], message: Message) -> CouponLedger:
        """An empty ledger for the series ``spec`` describes, owned by ``message``."""
        cap = spec.get("cap")
        space = None if spec.get("source") == "common" else code_space(spec)
        return cls(series_key(spec, message), int(cap) if cap else None, space, exhausted_text(spec), message.id,
                   shared_settings(spec))

    def shortage(self, pending: int = 0) -> str | None:
        """Why one more new grant is impossible after ``pending`` more (a preview's tally), or ``None``."""
        with self.lock:
            return self._shortage(pending)

    def _shortage(self, pending: int) -> str | None:
        if self.cap is not None and len(self.grants) + pending >= self.cap:
            return f"coupon series {self.key!r} reached its cap of {self.cap} codes"
        if self.space is not None and len(self.used) + pending >= self.space:
            return self.empty_text
        return None

    def held(self, message_id: str, customer_id: str) -> dict[str, Any] | None:
        """The grant this customer already holds for this message, if any."""
        with self.lock:
            return self.grants.get((message_id, customer_id))

    def reserve(self, message_id: str, customer_id: str, make_code: Any) -> dict[str, Any]:
        """The grant of this customer for this message, creating it with ``make_code(used)`` if new."""
        with self.lock:
            existing = self.grants.get((message_id, customer_id))
            if existing is not None:
                return existing
            why = self._shortage(0)
            if why is not None:
                raise CouponsExhausted(why)
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


@dataclass
class PreviewTally:
    """What one preview run would take from each series: counted here, never taken from a ledger.

    Lives in ``ctx.state`` (one per evaluation run), so a preview refuses the recipients a real run would
    refuse (cap reached, codes used up), in the same (audience) order.
    """

    pending: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    #: empty stand-ins for series that have no ledger yet (a preview creates none)
    blank: dict[str, CouponLedger] = field(default_factory=dict)

    def take(self, ledger: CouponLedger, message_id: str, customer_id: str) -> dict[str, Any] | None:
        """Count one recipient: the grant it already holds, else ``None`` (a new code would be reserved).

        Raises ``CouponsExhausted`` when a real reservation would fail at this point of the run.
        """
        held = ledger.held(message_id, customer_id)
        if held is not None:
            return held
        mine = self.pending.setdefault(ledger.key, set())
        if (message_id, customer_id) not in mine:
            why = ledger.shortage(len(mine))
            if why is not None:
                raise CouponsExhausted(why)
            mine.add((message_id, customer_id))
        return None


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

    def shared(self, spec: Mapping[str, Any], message: Message) -> tuple[str, Mapping[str, Any]]:
        """The series this message draws from (as printed: ``series 'name'``) and the settings every message
        sharing it must agree on."""
        return f"series {series_key(spec, message)!r}", shared_settings(spec)

    def prepare(self, spec: Mapping[str, Any], ctx: EvaluationContext, audience: int | None) -> list[Issue]:
        """Before a run: the series must agree with the message that created it, and a generated series must
        have codes enough for ``audience`` recipients (their number, when known)."""
        message = ctx.message
        with self._lock:
            ledger = self._ledgers.get(series_key(spec, message))
        if ledger is not None and dict(ledger.settings) != shared_settings(spec):
            return [_conflict(ledger, spec, message)]
        if audience is None or spec.get("source", "generated") != "generated":
            return []
        return _space_issues(spec, ledger, audience)

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
        key = series_key(spec, message)
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is None:
                ledger = self._ledgers[key] = CouponLedger.for_series(spec, message)
            return ledger

    def _existing_ledger(self, spec: Mapping[str, Any], message: Message,
                         blank: dict[str, CouponLedger] | None = None) -> CouponLedger:
        """The series' ledger, or an empty unsaved one (kept in ``blank``): a preview creates nothing."""
        key = series_key(spec, message)
        with self._lock:
            ledger = self._ledgers.get(key)
        if ledger is not None:
            return ledger
        if blank is None:
            return CouponLedger.for_series(spec, message)
        if key not in blank:
            blank[key] = CouponLedger.for_series(spec, message)
        return blank[key]

    def reservations(self, spec: Mapping[str, Any], message: Message) -> int:
        """How many codes the series has reserved or issued (the contract kit checks previews take none)."""
        return self._existing_ledger(spec, message).outstanding

    def reserve(self, spec: Mapping[str, Any], customer: Customer, ctx: EvaluationContext,
                send_at: datetime) -> Mapping[str, Any]:
        """This customer's code and its expiry, counted from ``send_at`` (the planned send; its date is the
        expiry's start). A preview derives a sample code from the ids and takes nothing, but counts on the
        run's :class:`PreviewTally`.

        Raises ``CouponsExhausted`` when the series has no code left for this recipient, ``CouponExpired``
        when a fixed expiry date falls before the send.
        """
        message = ctx.message
        expires = _expiry_for_send(spec, message, send_at)
        if ctx.preview:
            tally = ctx.state.setdefault(self.kind, PreviewTally())
            held = tally.take(self._existing_ledger(spec, message, tally.blank), message.id, customer.id)
            code = held["code"] if held is not None else _sample_code(spec, message.id, customer.id)
            return {"code": code, "expires_on": _iso(expires), "preview": True}
        grant = self.ledger(spec, message).reserve(message.id, customer.id, lambda used: _take(spec, used))
        return {**grant, "expires_on": _iso(expires), "preview": False}

    async def issue(self, spec: Mapping[str, Any], grant: Mapping[str, Any], message: Message,
                    at: datetime) -> Mapping[str, Any]:
        """Mark the reserved code as issued at ``at`` (the send); ``N days`` expiry counts from its date."""
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


def _expiry_for_send(spec: Mapping[str, Any], message: Message, send_at: datetime) -> date | None:
    """The expiry of a code sent at ``send_at``; ``CouponExpired`` when a fixed date is already past then."""
    expires = expiry_date(spec, message, send_at.date())
    if expires is not None and expires < send_at.date():
        raise CouponExpired(f"the coupon would expire on {expires}, before the send on {send_at.date()}")
    return expires


def _conflict(ledger: CouponLedger, spec: Mapping[str, Any], message: Message) -> Issue:
    mine = shared_settings(spec)
    differ = [k for k in mine if mine.get(k) != ledger.settings.get(k)]
    detail = "; ".join(f"{k}: {ledger.settings.get(k)!r} in {ledger.owner!r}, {mine.get(k)!r} in {message.id!r}"
                       for k in differ)
    who = (f"message {message.id!r} created coupon series {ledger.key!r} with other settings than it has now"
           if ledger.owner == message.id else
           f"messages {ledger.owner!r} and {message.id!r} share coupon series {ledger.key!r} with different settings")
    return Issue(f"{differ[0]}", "series_conflict", f"{who} ({detail})")


def _space_issues(spec: Mapping[str, Any], ledger: CouponLedger | None, audience: int) -> list[Issue]:
    """An error when the codes left in a generated series are fewer than the recipients that may need one."""
    space = code_space(spec)
    taken = len(ledger.used) if ledger is not None else 0
    held = ledger.outstanding if ledger is not None else 0
    cap = spec.get("cap")
    needed = audience if cap is None else min(audience, max(int(cap) - held, 0))
    if needed <= space - taken:
        return []
    alphabet, length = spec.get("alphabet", "alphanumeric"), spec.get("length", 8)
    already = f", {taken} already taken" if taken else ""
    return [Issue("length", "code_space_too_small",
                  f"{alphabet} codes of length {length} allow only {space} distinct codes{already}: too few for "
                  f"{audience} recipients; use longer codes, the alphanumeric alphabet or a cap")]


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
        send = message.schedule.at if message.schedule.kind == "at" else None
        if send is not None and day < send.date():
            return [Issue("expiry.date", "before_send", f"codes would expire on {day}, before the scheduled send "
                          f"on {send.date()} (schedule.at)")]
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
