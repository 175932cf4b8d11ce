"""Test sends: a run of ``kind`` ``test`` sends a message version to its points of contact (the ``poc`` of the
version's document: ``[{channel, handle}]``) instead of its audience.

:mod:`service.worker.runs` hands a test run here at its dispatch points:

* :func:`freeze` — the run's members are its points of contact, ``poc:<n>`` (``n`` their place in the list),
  not the audience.
* :func:`decide` — one delivery per point of contact, without rule evaluation (no eligibility, no frequency
  cap, no control group): the channel's default creative (the one without a variant, else the first),
  rendered for a synthetic customer whose contact field for that channel (``phone`` for SMS, ``email`` for
  e-mail …) holds the handle. Template ``vars`` are the ones the message's rules would set for that variant
  (:func:`sample_vars`), and the incentive is a preview grant (nothing reserved, nothing issued). A point of
  contact that cannot be rendered becomes a ``failed`` delivery saying why.

A test run never moves the message's status, and its deliveries carry no incentive to issue or release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from engine.contracts import DecisionDraft, EvaluationContext, FiredRule
from engine.errors import EngineError
from engine.model import Creative, Customer, Decision, Message
from engine.reachability import ContactReach
from engine.registry import Registry
from engine.rendering import render_for
from service.storage.ledger import DbLedgerStore
from service.storage.tables import MessageVersion, Run, RunMember

#: the ``kind`` of a test run
TEST = "test"
#: the ``audience`` a test run records: its points of contact
POC = "poc"
PREFIX = "poc:"


def is_test(run: Run) -> bool:
    """Whether ``run`` is a test send (to the points of contact)."""
    return run.kind == TEST


def points_of_contact(version: MessageVersion) -> list[dict[str, str]]:
    """The version's points of contact, ``[{channel, handle}]`` (as approved: from its document)."""
    return [{"channel": str(p.get("channel", "")), "handle": str(p.get("handle", ""))}
            for p in (version.document or {}).get("poc") or [] if isinstance(p, Mapping)]


def member_id(n: int) -> str:
    """The synthetic customer id of the ``n``-th point of contact (``poc:<n>``, from 0 as in ``/poc/<n>``)."""
    return f"{PREFIX}{n}"


def freeze(session: Session, run: Run) -> int:
    """Freeze the run's members: one per point of contact of its version. Returns how many."""
    version = session.get(MessageVersion, run.version_id)
    assert version is not None and run.id is not None
    pocs = points_of_contact(version)
    if pocs:
        session.execute(insert(RunMember), [{"run_id": run.id, "position": i, "customer": member_id(i)}
                                            for i in range(len(pocs))])
    return len(pocs)


# -- deciding one point of contact ------------------------------------------------------------------------


def contact_field(channel: object) -> str | None:
    """The customer attribute a channel reads its recipient's handle from (``phone``, ``email`` …), as its
    :class:`~engine.reachability.ContactReach` says; ``None`` for a channel that reaches nobody by one handle."""
    for name in ("reach", "_reach"):
        reach = getattr(channel, name, None)
        if isinstance(reach, ContactReach):
            return reach.contact
    return None


def default_creative(message: Message, channel: str) -> Creative | None:
    """The channel's creative of the default variant: the one without a variant (``default``), else the first."""
    mine = [c for c in message.creatives if c.channel == channel]
    return next((c for c in mine if c.variant == "default"), mine[0] if mine else None)


def sample_vars(message: Message, variant: str) -> dict[str, Any]:
    """The template ``vars`` a recipient of ``variant`` would get, read from the rules without evaluating
    them: each key from the first rule (by priority) that gives this variant and sets it, else from the last
    rule that sets it (the catch-all)."""
    rules = sorted((r for rs in message.rulesets.values() for r in rs.rules), key=lambda r: r.priority)
    out: dict[str, Any] = {}
    for rule in reversed(rules):
        out.update(rule.then.get("vars") or {})
    for rule in reversed(rules):
        if rule.then.get("variant") == variant:
            out.update(rule.then.get("vars") or {})
    return out


def _no_rules(kind: str, draft: DecisionDraft) -> Sequence[FiredRule]:
    raise EngineError(f"a test send evaluates no rules ({kind})")


class Failed(Exception):
    """A point of contact cannot be sent to; the text says why."""


def _customer(registry: Registry, message: Message, n: int, channel: str, handle: str) -> Customer:
    try:
        target = registry.channel(channel)
    except EngineError as exc:
        raise Failed(str(exc)) from None
    field = contact_field(target)
    if field is None:
        raise Failed(f"the {channel} channel does not reach a person by one handle: it cannot take a test send")
    contact = registry.contacts.get(field)
    try:
        value = contact.check(handle) if contact is not None else handle
    except ValueError as exc:
        raise Failed(str(exc)) from None
    customer = Customer(member_id(n), {field: value})
    if not target.reachability(customer, message).reachable:
        why = getattr(target, "reachability_reason", None)
        raise Failed(f"{channel} cannot reach {handle!r}: "
                     f"{why(customer, message) if why is not None else target.reachability(customer, message)}")
    return customer


def _grant(registry: Registry, message: Message, ctx: EvaluationContext | None, customer: Customer,
           at: datetime) -> Mapping[str, Any] | None:
    if message.incentive is None or ctx is None:
        return None
    kind = registry.incentive(message.incentive.kind)
    try:
        return kind.reserve(message.incentive.settings, customer, ctx, at)
    except EngineError as exc:
        raise Failed(f"the {message.incentive.kind} incentive cannot serve it: {exc}") from None


def _one(registry: Registry, message: Message, ctx: EvaluationContext | None, n: int, poc: Mapping[str, str],
         at: datetime) -> dict[str, Any]:
    """The delivery values of one point of contact (``customer``, ``status`` …; the run adds its own)."""
    channel, handle = poc["channel"], poc["handle"]
    row: dict[str, Any] = {"customer": member_id(n), "channel": channel, "variant": None, "incentive": None,
                           "updated_at": at}
    decision: dict[str, Any] = {"customer": member_id(n), "included": True, "channel": channel, "fallbacks": [],
                                "test": True, "handle": handle}
    try:
        creative = default_creative(message, channel)
        if creative is None:
            raise Failed(f"the version has no {channel} creative")
        customer = _customer(registry, message, n, channel, handle)
        grant = _grant(registry, message, ctx, customer, at)
        variant = creative.variant
        vars = sample_vars(message, variant)
        rendering = render_for(message, Decision(customer.id, True, variant=variant, channel=channel, incentive=grant,
                                                 send_at=at), channel, registry, customer=customer, vars=vars,
                               preview=True)
    except Failed as exc:
        return _failed(row, decision, str(exc), at)
    except EngineError as exc:
        return _failed(row, decision, f"not rendered: {exc}", at)
    decision.update(variant=variant, vars=vars, incentive=dict(grant) if grant is not None else None)
    row.update(variant=variant, decision=decision)
    if not rendering.ok:
        detail = rendering.error or "; ".join(p.message for p in rendering.problems) or ""
        return _failed(row, decision, f"not rendered: {rendering.failure}" + (f": {detail}" if detail else ""), at)
    return {**row, "status": "pending", "payload": dict(rendering.payload or {}), "send_at": at}


def _failed(row: dict[str, Any], decision: dict[str, Any], why: str, at: datetime) -> dict[str, Any]:
    return {**row, "decision": decision, "status": "failed", "payload": None,
            "errors": [{"channel": row["channel"], "outcome": "permanent", "reason": why[:2000], "at": at.isoformat()}]}


def decide(registry: Registry, message: Message, version: MessageVersion, ledger: DbLedgerStore,
           customers: Sequence[str], at: datetime | None = None) -> list[dict[str, Any]]:
    """The delivery values (without the run's own: key, run, chunk …) of these members of a test run (``poc:<n>``
    ids), each ``pending`` with its rendered payload or ``failed`` with the reason."""
    at = at or datetime.now(UTC)
    pocs = points_of_contact(version)
    ctx = EvaluationContext(message, registry, at, _no_rules, preview=True, ledger=ledger) \
        if message.incentive is not None else None
    rows = []
    for c in customers:
        n = int(c.removeprefix(PREFIX))
        rows.append(_one(registry, message, ctx, n, pocs[n], at))
    return rows
