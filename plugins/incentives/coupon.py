"""Coupons: one coupon series per message; the codes taken from a series live in its ledger, in the
ledger store of the call's context (``ctx.ledger``), never on the plugin object.

Settings (``incentive.settings``):

* ``source``: ``generated`` (default) | ``list`` (uploaded ``codes``) | ``common`` (one ``code`` for all)
* ``alphabet``: ``alphanumeric`` (default; no ambiguous 0/O/1/I/L) | ``numeric``; ``length`` 4–32 (default 7,
  the top of the 5–7 characters Engage+ recommends for generated codes: short enough to type at a till,
  and 31⁷ ≈ 27 billion alphanumeric codes keep a cap of millions unguessable)
* ``expiry``: exactly one of ``{date: YYYY-MM-DD}`` (not before the send), ``{days: N}`` (N days after
  each recipient's send), ``{with_campaign: true}`` (the campaign's end)
* ``cap``: the most codes the series may issue
* ``series``: the ledger key (default: the message id), so two messages may share one series; they must
  then agree on its source, alphabet, length, codes and cap

A preview (``ctx.preview``) shows a deterministic sample code and reserves nothing, but counts what it
would take on a per-run :class:`PreviewTally`, so recipients beyond the cap (or beyond the codes left) are
refused in the same order as in a real run. At most one code is reserved per customer and message:
reserving again returns the same grant, and no code is held by two customers (the store's ledger
``("coupon", series)`` guarantees both; see :mod:`engine.stores`). ``issue`` marks the code sent,
``release`` gives an unsent code back to the series.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from engine import (
    Customer,
    EngineError,
    EvaluationContext,
    IncentiveContext,
    Issue,
    LedgerEntry,
    LedgerFull,
    LedgerInfo,
    LedgerStore,
    Message,
    hookimpl,
)

UNAMBIGUOUS = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
DIGITS = "0123456789"
SOURCES = ("generated", "list", "common")
EXPIRY_KEYS = ("date", "days", "with_campaign")
#: the length of generated codes when ``length`` is not set
DEFAULT_LENGTH = 7


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
    return len(alphabet_of(spec)) ** int(spec.get("length", DEFAULT_LENGTH))


def shared_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The series settings that messages sharing the series must agree on (defaults filled in)."""
    source = spec.get("source", "generated")
    out: dict[str, Any] = {"source": source, "cap": spec.get("cap")}
    if source == "generated":
        out.update(alphabet=spec.get("alphabet", "alphanumeric"), length=spec.get("length", DEFAULT_LENGTH))
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
    length = int(spec.get("length", DEFAULT_LENGTH))
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


def ledger_key(spec: Mapping[str, Any], message: Message) -> tuple[str, str]:
    """The series' ledger in the store: ``("coupon", series)``."""
    return ("coupon", series_key(spec, message))


def cap_of(spec: Mapping[str, Any]) -> int | None:
    """The most codes the series may hand out (``None``: no cap)."""
    cap = spec.get("cap")
    return int(cap) if cap else None


def space_of(spec: Mapping[str, Any]) -> int | None:
    """How many distinct codes the series has (``None`` for a common code: one code for everyone)."""
    return None if spec.get("source") == "common" else code_space(spec)


def shortage(spec: Mapping[str, Any], key: tuple[str, str], info: LedgerInfo | None, pending: int) -> str | None:
    """Why one more new grant is impossible after ``pending`` more (a preview's tally), or ``None``."""
    entries, items = (info.entries, info.items) if info is not None else (0, 0)
    cap, space = cap_of(spec), space_of(spec)
    if cap is not None and entries + pending >= cap:
        return full_text(spec, key, "cap")
    if space is not None and items + pending >= space:
        return exhausted_text(spec)
    return None


def full_text(spec: Mapping[str, Any], key: tuple[str, str], limit: str) -> str:
    """Why the series cannot hand out another code: its cap, or its codes used up."""
    if limit == "cap":
        return f"coupon series {key[1]!r} reached its cap of {cap_of(spec)} codes"
    return exhausted_text(spec)


def grant_of(entry: LedgerEntry, series: str) -> dict[str, Any]:
    """The grant a ledger entry stands for: code, series, message, customer and status."""
    message_id, customer_id = entry.holder
    return {"code": entry.item if entry.item is not None else entry.data.get("code"), "series": series,
            "message": message_id, "customer": customer_id, "status": entry.status}


@dataclass
class PreviewTally:
    """What one preview run would take from each series: counted here, never taken from a ledger.

    Lives in ``ctx.state`` (one per evaluation run), so a preview refuses the recipients a real run would
    refuse (cap reached, codes used up), in the same (audience) order.
    """

    pending: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)

    def take(self, store: LedgerStore, spec: Mapping[str, Any], key: tuple[str, str],
             holder: tuple[str, str]) -> LedgerEntry | None:
        """Count one recipient: the entry it already holds, else ``None`` (a new code would be reserved).

        Raises ``CouponsExhausted`` when a real reservation would fail at this point of the run.
        """
        held = store.entry(key, holder)
        if held is not None:
            return held
        mine = self.pending.setdefault(key, set())
        if holder not in mine:
            why = shortage(spec, key, store.info(key), len(mine))
            if why is not None:
                raise CouponsExhausted(why)
            mine.add(holder)
        return None


@dataclass
class RunState:
    """Per-run scratch (in ``ctx.state["coupon"]``): the preview tally and the series opened this run."""

    tally: PreviewTally = field(default_factory=PreviewTally)
    opened: set[tuple[str, str]] = field(default_factory=set)


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
        key = ledger_key(spec, message)
        info = ctx.ledger.info(key)
        if info is not None and info.owner and dict(info.settings) != shared_settings(spec):
            return [_conflict(key, info, spec, message)]
        if audience is None or spec.get("source", "generated") != "generated":
            return []
        return _space_issues(spec, info, audience)

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

    def reservations(self, spec: Mapping[str, Any], message: Message, ledger: LedgerStore) -> int:
        """How many codes the series has reserved or issued in ``ledger``."""
        info = ledger.info(ledger_key(spec, message))
        return info.entries if info is not None else 0

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
        key, holder = ledger_key(spec, message), (message.id, customer.id)
        run = ctx.state.setdefault(self.kind, RunState())
        if ctx.preview:
            held = run.tally.take(ctx.ledger, spec, key, holder)
            code = grant_of(held, key[1])["code"] if held is not None else _sample_code(spec, message.id, customer.id)
            return {"code": code, "expires_on": _iso(expires), "preview": True}
        if key not in run.opened:  # the first message to use a series records its settings
            ctx.ledger.open(key, message.id, shared_settings(spec))
            run.opened.add(key)
        common = spec.get("source") == "common"
        try:
            entry = ctx.ledger.reserve(key, holder, {"code": spec["code"]} if common else {},
                                       candidates=None if common else _candidates(spec),
                                       cap=cap_of(spec), space=space_of(spec))
        except LedgerFull as full:
            raise CouponsExhausted(full_text(spec, key, full.limit)) from None
        return {**grant_of(entry, key[1]), "expires_on": _iso(expires), "preview": False}

    async def issue(self, spec: Mapping[str, Any], grant: Mapping[str, Any], ctx: IncentiveContext) -> Mapping[str, Any]:
        """Mark the reserved code as issued at ``ctx.at`` (the send; ``N days`` expiry counts from its date).
        Issuing again returns the first issue. ``KeyError`` when no code is reserved for the grant."""
        if grant.get("preview", True) or "series" not in grant:
            raise KeyError("a preview grant cannot be issued")
        key, holder = ("coupon", str(grant["series"])), (str(grant["message"]), str(grant["customer"]))
        day = ctx.at.date()
        entry = ctx.ledger.mark(key, holder, "issued", {
            "issued_on": day.isoformat(), "expires_on": _iso(expiry_date(spec, ctx.message, day))})
        if entry is None:
            raise KeyError(f"no coupon reserved for customer {holder[1]!r} in series {key[1]!r}")
        return {**grant_of(entry, key[1]), "issued_on": entry.data["issued_on"], "expires_on": entry.data["expires_on"]}

    def release(self, spec: Mapping[str, Any], grant: Mapping[str, Any], ctx: IncentiveContext) -> None:
        """Return an unsent code to the series (a failed send). Previews and issued codes are left alone."""
        if grant.get("preview", True) or "series" not in grant:
            return
        key, holder = ("coupon", str(grant["series"])), (str(grant["message"]), str(grant["customer"]))
        ctx.ledger.release(key, holder, None if spec.get("source") == "common" else str(grant["code"]))


def _expiry_for_send(spec: Mapping[str, Any], message: Message, send_at: datetime) -> date | None:
    """The expiry of a code sent at ``send_at``; ``CouponExpired`` when a fixed date is already past then."""
    expires = expiry_date(spec, message, send_at.date())
    if expires is not None and expires < send_at.date():
        raise CouponExpired(f"the coupon would expire on {expires}, before the send on {send_at.date()}")
    return expires


def _conflict(key: tuple[str, str], ledger: LedgerInfo, spec: Mapping[str, Any], message: Message) -> Issue:
    mine = shared_settings(spec)
    differ = [k for k in mine if mine.get(k) != ledger.settings.get(k)]
    detail = "; ".join(f"{k}: {ledger.settings.get(k)!r} in {ledger.owner!r}, {mine.get(k)!r} in {message.id!r}"
                       for k in differ)
    who = (f"message {message.id!r} created coupon series {key[1]!r} with other settings than it has now"
           if ledger.owner == message.id else
           f"messages {ledger.owner!r} and {message.id!r} share coupon series {key[1]!r} with different settings")
    return Issue(f"{differ[0]}", "series_conflict", f"{who} ({detail})")


def _space_issues(spec: Mapping[str, Any], ledger: LedgerInfo | None, audience: int) -> list[Issue]:
    """An error when the codes left in a generated series are fewer than the recipients that may need one."""
    space = code_space(spec)
    taken = ledger.items if ledger is not None else 0
    held = ledger.entries if ledger is not None else 0
    cap = spec.get("cap")
    needed = audience if cap is None else min(audience, max(int(cap) - held, 0))
    if needed <= space - taken:
        return []
    alphabet, length = spec.get("alphabet", "alphanumeric"), spec.get("length", DEFAULT_LENGTH)
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
    length = spec.get("length", DEFAULT_LENGTH)
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


def _candidates(spec: Mapping[str, Any]) -> Iterator[str]:
    """The codes to try, in order: the uploaded list, or random codes of the series' alphabet and length
    (endless; the store's ``space`` check stops a full series before it draws)."""
    if spec.get("source", "generated") == "list":
        yield from (str(c) for c in spec.get("codes") or ())
        return
    alphabet, length = alphabet_of(spec), int(spec.get("length", DEFAULT_LENGTH))
    while True:  # rejection sampling in the store; validation keeps the cap well below the code space
        yield "".join(secrets.choice(alphabet) for _ in range(length))


def _sample_code(spec: Mapping[str, Any], message_id: str, customer_id: str) -> str:
    """A deterministic preview code of the right shape (never reserved, may repeat)."""
    source = spec.get("source", "generated")
    digest = hashlib.sha256(f"{message_id}:{customer_id}".encode()).digest()
    if source == "common":
        return str(spec.get("code", ""))
    if source == "list":
        codes = list(spec.get("codes") or ())
        return codes[int.from_bytes(digest[:8], "big") % len(codes)] if codes else ""
    alphabet, length = alphabet_of(spec), int(spec.get("length", DEFAULT_LENGTH))
    stream = digest * (length // len(digest) + 1)
    return stream[:length].translate(_byte_table(alphabet)).decode("ascii")


_TABLES: dict[str, bytes] = {}


def _byte_table(alphabet: str) -> bytes:
    """Byte ``b`` → ``alphabet[b % len(alphabet)]`` (an ASCII alphabet), for ``bytes.translate``."""
    table = _TABLES.get(alphabet)
    if table is None:
        table = _TABLES[alphabet] = bytes(ord(alphabet[b % len(alphabet)]) for b in range(256))
    return table


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


@hookimpl
def register_incentives(register):
    """Register the coupon incentive type."""
    register(Coupon())
