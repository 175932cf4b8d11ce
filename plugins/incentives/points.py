"""Points: a loyalty points strategy attached to a message (program, amount or rule, expiry).

Settings (``incentive.settings``):

* ``program``: the loyalty program's name (required)
* ``amount``: a fixed number of points, **or** ``rule``: ``{by_field: customer.tier, amounts: {gold: 500},
  default: 100}`` (points by the value of a customer field; ``default`` for every other value). The field
  must be in the field catalogue, and the keys of ``amounts`` are read as values of its type (``true`` /
  ``false`` for a boolean field, ``1`` or ``"1"`` for an integer field); a key of another type is an
  error, a key outside a closed field's values a warning (it can never match).
* ``expiry``: ``{date: YYYY-MM-DD}`` (not before the send) or ``{days: N}`` (after the send); optional

Points are computed per recipient; a preview takes nothing. A real reservation is recorded in the ledger
``("points", message id)`` of the call's ledger store (``ctx.ledger``; the plugin object holds no state),
so a customer is credited at most once per message (``issue``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from engine import (
    Customer,
    EvaluationContext,
    IncentiveContext,
    Issue,
    LedgerEntry,
    LedgerStore,
    Message,
    coerce_value,
    hookimpl,
)

_KEYS = ("program", "amount", "rule", "expiry")
#: the field type a customer value of each Python type was read as (audience readers type every value)
_TYPE_OF_VALUE = {bool: "boolean", int: "integer", float: "number", str: "string"}
#: field types points may be keyed by
_KEY_TYPES = ("string", "integer", "number", "boolean", "date")


def typed_amounts(amounts: Mapping[Any, Any], ftype: str) -> dict[Any, int]:
    """``amounts`` with each key read as a value of ``ftype`` (keys that cannot be read are left out)."""
    out: dict[Any, int] = {}
    for key, points in amounts.items():
        try:
            out.setdefault(_key_as(ftype, key), int(points))
        except (TypeError, ValueError):
            continue
    return out


def _key_as(ftype: str, key: Any) -> Any:
    if isinstance(key, date) and ftype in ("string", "date"):
        return key.isoformat()  # YAML reads 2026-07-01 as a date; customer dates are ISO strings
    return coerce_value(ftype, key)


def points_for(spec: Mapping[str, Any], customer: Customer, cache: dict[Any, Any] | None = None) -> int:
    """The points this customer earns under the strategy.

    The amounts' keys are compared as values of the customer value's type (so ``true`` matches a boolean
    field, ``"1"`` an integer field); ``cache`` (per run) keeps the typed tables.
    """
    if "amount" in spec:
        return int(spec["amount"])
    rule = spec["rule"]
    value = customer.get(str(rule["by_field"]).removeprefix("customer."))
    ftype = _TYPE_OF_VALUE.get(type(value))
    if ftype is None:
        return int(rule["default"])
    cache = {} if cache is None else cache
    table = cache.get(ftype)
    if table is None:
        table = cache[ftype] = typed_amounts(rule.get("amounts") or {}, ftype)
    return table.get(value, int(rule["default"]))


def expiry_date(spec: Mapping[str, Any], credited: date) -> date | None:
    """When points credited on ``credited`` expire (``None``: never)."""
    expiry = spec.get("expiry") or {}
    if "date" in expiry:
        return date.fromisoformat(str(expiry["date"]))
    if "days" in expiry:
        return credited + timedelta(days=int(expiry["days"]))
    return None


def _whole(value: Any, minimum: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_strategy(spec: Mapping[str, Any], message: Message) -> list[Issue]:
    """Every problem with a points strategy, each naming its field."""
    issues = [Issue(k, "unknown_key", f"unknown points setting {k!r}") for k in spec if k not in _KEYS]
    program = spec.get("program")
    if not isinstance(program, str) or not program.strip():
        issues.append(Issue("program", "required", "a points strategy names its loyalty program"))
    if ("amount" in spec) == ("rule" in spec):
        issues.append(Issue("amount", "amount_or_rule", "give either a fixed amount or a rule, not both or neither"))
    elif "amount" in spec and not _whole(spec["amount"]):
        issues.append(Issue("amount", "invalid", "amount is a whole number of points, at least 1"))
    elif "rule" in spec:
        issues += _rule_issues(spec["rule"])
    expiry = spec.get("expiry")
    if expiry is not None:
        if not isinstance(expiry, Mapping) or len(expiry) != 1 or not ({"date", "days"} & set(expiry)):
            issues.append(Issue("expiry", "invalid", "expiry is exactly one of {date} or {days}"))
        elif "days" in expiry and not _whole(expiry["days"]):
            issues.append(Issue("expiry.days", "invalid", "expiry.days is a whole number of days, at least 1"))
        elif "date" in expiry:
            try:
                day = date.fromisoformat(str(expiry["date"]))
            except ValueError:
                issues.append(Issue("expiry.date", "invalid", f"expected a date YYYY-MM-DD, got {expiry['date']!r}"))
            else:
                send = message.schedule.at if message.schedule.kind == "at" else None
                if message.campaign.starts and day < message.campaign.starts:
                    issues.append(Issue("expiry.date", "before_campaign",
                                        f"points would expire on {day}, before the campaign starts"))
                elif send is not None and day < send.date():
                    issues.append(Issue("expiry.date", "before_send", f"points would expire on {day}, before the "
                                        f"scheduled send on {send.date()} (schedule.at)"))
    return issues


def check_rule_field(spec: Mapping[str, Any], catalogue: Any) -> list[Issue]:
    """The rule's field against the field catalogue, and its amounts' keys against the field's type."""
    rule = spec.get("rule")
    if not isinstance(rule, Mapping):
        return []  # check_strategy names the problem
    by_field = rule.get("by_field")
    if not isinstance(by_field, str) or not by_field.startswith("customer.") or by_field == "customer.":
        return []  # check_strategy names the problem
    field = catalogue.lookup(by_field)
    if field is None:
        hint = catalogue.suggest(by_field)
        return [Issue("rule.by_field", "unknown_field", f"unknown field {by_field!r}"
                      + (f"; did you mean {hint!r}?" if hint else "; declare it in fields.yaml"))]
    if field.type not in _KEY_TYPES:
        return [Issue("rule.by_field", "invalid", f"{by_field} is a {field.type} field; points are keyed by a "
                      f"{', '.join(_KEY_TYPES)} field")]
    amounts = rule.get("amounts")
    return _key_issues(amounts, by_field, field) if isinstance(amounts, Mapping) else []


def _key_issues(amounts: Mapping[Any, Any], by_field: str, field: Any) -> list[Issue]:
    issues, seen = [], {}
    allowed = tuple(getattr(field, "values", ()) or ())
    for key in amounts:
        try:
            typed = _key_as(field.type, key)
        except ValueError as exc:
            issues.append(Issue(f"rule.amounts.{key}", "key_type",
                                f"{by_field} is a {field.type} field; the key {key!r} is not one ({exc})"))
            continue
        if typed in seen:
            issues.append(Issue(f"rule.amounts.{key}", "duplicate",
                                f"the key {key!r} is the same {field.type} value as {seen[typed]!r}"))
            continue
        seen[typed] = key
        if allowed and typed not in allowed:
            issues.append(Issue(f"rule.amounts.{key}", "never_matches", f"{by_field} is one of "
                                f"{', '.join(map(str, allowed))}; the key {key!r} can never match", "warning"))
    return issues


def _rule_issues(rule: Any) -> list[Issue]:
    if not isinstance(rule, Mapping):
        return [Issue("rule", "invalid", "rule is {by_field, amounts, default}")]
    issues = []
    by_field = rule.get("by_field")
    if not isinstance(by_field, str) or not by_field.startswith("customer.") or by_field == "customer.":
        issues.append(Issue("rule.by_field", "invalid", "by_field is a customer field, e.g. customer.tier"))
    amounts = rule.get("amounts")
    if not isinstance(amounts, Mapping) or not amounts:
        issues.append(Issue("rule.amounts", "required", "amounts maps field values to points, e.g. {gold: 500}"))
    else:
        issues += [Issue(f"rule.amounts.{k}", "invalid", f"points for {k!r} must be a whole number ≥ 0")
                   for k, v in amounts.items() if not _whole(v, 0)]
    if "default" not in rule:
        issues.append(Issue("rule.default", "required", "a rule needs default points for every other value"))
    elif not _whole(rule["default"], 0):
        issues.append(Issue("rule.default", "invalid", "default is a whole number of points ≥ 0"))
    return issues


class Points:
    """The ``points`` incentive type (see the module docstring for its settings)."""

    kind = "points"
    tags = ("points.amount", "points.expires_on", "points.program")
    spec_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["program"],
        "properties": {"program": {"type": "string"}, "amount": {"type": "integer", "minimum": 1},
                       "rule": {"type": "object"}, "expiry": {"type": "object"}},
        "additionalProperties": False,
    }

    def validate(self, spec: Mapping[str, Any], message: Message) -> list[Issue]:
        """Check the strategy; paths are inside ``incentive.settings``."""
        return check_strategy(spec, message)

    def check_fields(self, spec: Mapping[str, Any], catalogue: Any) -> list[Issue]:
        """Check the rule's field and its keys against the field catalogue (paths inside ``incentive.settings``)."""
        return check_rule_field(spec, catalogue)

    def sample_specs(self) -> list[Mapping[str, Any]]:
        """Valid strategies: a fixed amount, and points by tier (for the contract kit and the docs)."""
        return [{"program": "Herald Rewards", "amount": 200, "expiry": {"days": 90}},
                {"program": "Herald Rewards", "rule": {"by_field": "customer.tier", "amounts": {"gold": 500,
                 "silver": 250}, "default": 100}, "expiry": {"date": "2026-12-31"}}]

    def sample_invalid_specs(self) -> list[tuple[Mapping[str, Any], str]]:
        """Invalid strategies and the path each is rejected at."""
        return [({"amount": 100}, "program"),
                ({"program": "Herald Rewards"}, "amount"),
                ({"program": "Herald Rewards", "rule": {"by_field": "customer.tier", "amounts": {"gold": 5}}},
                 "rule.default")]

    def reservations(self, spec: Mapping[str, Any], message: Message, ledger: LedgerStore) -> int:
        """How many recipients of ``message`` hold reserved or credited points in ``ledger``."""
        info = ledger.info(("points", message.id))
        return info.entries if info is not None else 0

    def reserve(self, spec: Mapping[str, Any], customer: Customer, ctx: EvaluationContext,
                send_at: datetime) -> Mapping[str, Any]:
        """The points of this recipient, expiring ``days`` after ``send_at`` (the planned send); a real
        reservation is recorded once per customer and message (the first one is returned again)."""
        grant = {"amount": points_for(spec, customer, ctx.state.setdefault(self.kind, {})),
                 "program": spec.get("program"), "expires_on": _iso(expiry_date(spec, send_at.date())),
                 "preview": ctx.preview}
        if ctx.preview:
            return grant
        holder = (ctx.message.id, customer.id)
        return _grant(ctx.ledger.reserve(("points", ctx.message.id), holder, grant))

    async def issue(self, spec: Mapping[str, Any], grant: Mapping[str, Any], ctx: IncentiveContext) -> Mapping[str, Any]:
        """Credit the points once (a second call returns the first credit); expiry in days counts from
        ``ctx.at``. ``KeyError`` when no points are reserved for the grant."""
        message_id = str(grant.get("message", ctx.message.id))
        day = ctx.at.date()
        entry = ctx.ledger.mark(("points", message_id), (message_id, str(grant.get("customer"))), "credited",
                                {"credited_on": day.isoformat(), "expires_on": _iso(expiry_date(spec, day))})
        if entry is None:
            raise KeyError(f"no points reserved for customer {grant.get('customer')!r} in message {message_id!r}")
        return _grant(entry)

    def release(self, spec: Mapping[str, Any], grant: Mapping[str, Any], ctx: IncentiveContext) -> None:
        """Drop an uncredited reservation (a failed send); credited points and previews are left alone."""
        if grant.get("preview", True):
            return
        message_id = str(grant["message"])
        ctx.ledger.release(("points", message_id), (message_id, str(grant["customer"])))


def _grant(entry: LedgerEntry) -> dict[str, Any]:
    """The grant a ledger entry stands for: its data, message, customer and status."""
    message_id, customer_id = entry.holder
    return {**entry.data, "message": message_id, "customer": customer_id, "status": entry.status}


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


@hookimpl
def register_incentives(register):
    """Register the points incentive type."""
    register(Points())
