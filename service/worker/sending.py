"""Sending a chunk's deliveries: which are due (:func:`plan_pass`), and one batch of one channel
(:func:`send_batch`): claim, check the customer's subscription as it is now, send, record.

Exactly once: a delivery row (its idempotency key unique) is claimed before its provider is called —
``pending``/``retrying`` → ``sending`` with this step's token and a lease — and only the claimant records the
outcome. Tokens are ``<worker name>/<workflow id>``; a worker that starts again under its name releases the
claims it held (:func:`release_claims`), so its recovered steps take them back at once; another worker takes a
claim over only when its lease has run out. Providers get the
same idempotency key on every try. A batch's outcomes are recorded together, in one transaction that checks
each row's claim (:func:`_record`).

Outcomes: accepted → ``sent`` (the reserved incentive is issued, once per message and customer); transient →
``retrying`` after an exponential backoff with full jitter (a provider's ``Retry-After`` when longer), up to
``max_attempts`` tries of the channel; permanent, or out of tries → the next fallback channel (rendered for
it), marking the customer unreachable on the channel when the provider said the address is dead; when no
channel is left → ``failed`` with every reason, and the reserved incentive is released.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.contracts import IncentiveContext, SendContext, SendResult
from engine.delivery import attempt
from engine.model import Customer, Message
from engine.reachability import recorded_reason
from engine.rendering import render_for
from service.storage import messages
from service.storage.customer_changes import stamp
from service.storage.db import transaction
from service.storage.ledger import DbLedgerStore
from service.storage.tables import Customer as CustomerRow
from service.storage.tables import Delivery, MessageRow, Run
from service.worker import pace
from service.worker.context import WorkerContext
from service.worker.links import track
from service.worker.runs import approved_message, aware, now, tiny_base
from service.worker.test_sends import is_test

log = logging.getLogger(__name__)

#: the recorded subscription status an address the provider called dead gets, by channel
DEAD_ADDRESS = {"email": "hard_bounced"}


@dataclass(frozen=True)
class Plan:
    """One look at a chunk: batches due now (channel, delivery ids), and else how long until the next is due
    (``wait``; ``None`` with no batches: the chunk is done)."""

    batches: list[tuple[str, list[int]]]
    wait: float | None


def plan_pass(ctx: WorkerContext, run_id: int, chunk: int) -> Plan:
    """The chunk's deliveries due now, by channel in batches of ``batch_size``; a cancelled message's waiting
    deliveries become ``cancelled`` (their incentives released) instead."""
    t = now()
    with transaction(ctx.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        m = s.get(MessageRow, run.message_id)
        assert m is not None
        rows = s.execute(sa_select(col(Delivery.id), col(Delivery.channel), col(Delivery.status), col(Delivery.send_at),
                                   col(Delivery.next_attempt_at), col(Delivery.claimed_until)).where(
            col(Delivery.run_id) == run_id, col(Delivery.chunk) == chunk,
            col(Delivery.status).in_(("pending", "retrying", "sending")))).all()
    if m.status == messages.CANCELLED and rows:
        _cancel(ctx, run_id, chunk)
        return Plan([], None)
    due: dict[str, list[int]] = defaultdict(list)
    later: list[datetime] = []
    for did, channel, status, send_at, next_at, until in rows:
        when = aware(until) if status == "sending" else aware(next_at) or aware(send_at) or t
        assert when is not None
        if when <= t:
            due[channel or ""].append(did)
        else:
            later.append(when)
    batches = [(ch, ids[i:i + size]) for ch, ids in sorted(due.items())
               for size in (ctx.limits.batch_for(ch),) for i in range(0, len(ids), size)]
    wait = None if batches or not later else min(ctx.limits.max_sleep, max(0.05, (min(later) - t).total_seconds()))
    return Plan(batches, wait)


def _cancel(ctx: WorkerContext, run_id: int, chunk: int) -> None:
    with _writing(ctx.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        message = approved_message(ctx, s, run)
        rows = s.exec(select(Delivery).where(Delivery.run_id == run_id, Delivery.chunk == chunk,
                                             col(Delivery.status).in_(("pending", "retrying")))
                      .with_for_update()).all()
        ledger = DbLedgerStore.joining(s.connection(), run.org_id)
        for d in rows:
            d.status, d.updated_at = "cancelled", now()
            _release(ctx, message, d, ledger)


def _claim(ctx: WorkerContext, ids: list[int], token: str) -> list[Delivery]:
    t = now()
    until = t + timedelta(seconds=ctx.limits.lease)
    with transaction(ctx.engine) as s:
        s.execute(update(Delivery).where(col(Delivery.id).in_(ids), or_(
            col(Delivery.status).in_(("pending", "retrying")),
            (col(Delivery.status) == "sending") & (col(Delivery.claimed_until) < t)))
                  .values(status="sending", claimed_by=token, claimed_until=until, updated_at=t))
        return list(s.exec(select(Delivery).where(col(Delivery.id).in_(ids), Delivery.claimed_by == token,
                                                  Delivery.status == "sending")).all())


def release_claims(ctx: WorkerContext) -> int:
    """At a worker's start: the claims this worker's name held when it stopped end now (nothing of it runs
    yet), so its recovered steps — or anyone — take those deliveries back without waiting for the lease.
    Returns how many were released."""
    with transaction(ctx.engine) as s:
        result = s.execute(update(Delivery).where(col(Delivery.status) == "sending",
                                                  col(Delivery.claimed_by).startswith(f"{ctx.name}/", autoescape=True))
                           .values(claimed_until=now() - timedelta(seconds=1)))
        return result.rowcount  # type: ignore[attr-defined]


def _current(session: Session, org_id: int, customers: list[str]) -> dict[str, CustomerRow]:
    rows = session.exec(select(CustomerRow).where(CustomerRow.org_id == org_id,
                                                  col(CustomerRow.external_id).in_(customers))).all()
    return {r.external_id: r for r in rows}


def send_batch(ctx: WorkerContext, run_id: int, ids: list[int], token: str) -> dict[str, int]:
    """Claim these deliveries for ``token``, send each on its channel (concurrently, on the send loop) and
    record the outcomes. Returns how many ended in each outcome."""
    claimed = _claim(ctx, ids, token)
    if not claimed:
        return {}
    with transaction(ctx.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        message = approved_message(ctx, s, run)
        # a test send goes to a point of contact, not to a customer: no customer row, no subscription to check
        people = {} if is_test(run) else _current(s, run.org_id, [d.customer for d in claimed])
    blocked: dict[int, str] = {}
    for d in [] if is_test(run) else claimed:
        row = people.get(d.customer)
        if row is None or row.deleted_at is not None:
            blocked[d.id] = "the customer was deleted"  # type: ignore[index]
            continue
        status = (row.subscriptions or {}).get(d.channel or "")
        why = recorded_reason(Customer(d.customer, {f"subscription.{d.channel}": status}), d.channel or "") \
            if status is not None else None
        if why is not None:
            blocked[d.id] = why  # type: ignore[index]

    sendable = [d for d in claimed if d.id not in blocked]
    slots = pace.slots_for(ctx.engine, ctx.limits, [(d.id, d.channel or "") for d in sendable])  # type: ignore[misc]

    async def go() -> list[SendResult]:
        return list(await asyncio.gather(*(_send(ctx, message, run, d, slots.get(d.id)) for d in sendable)))  # type: ignore[arg-type]

    results = iter(ctx.loop.run(go()))
    outcomes = [SendResult.permanent(blocked[d.id]) if d.id in blocked else next(results)  # type: ignore[index]
                for d in claimed]
    return _record(ctx, message, run, claimed, outcomes, people, token)


async def _send(ctx: WorkerContext, message: Message, run: Run, d: Delivery, slot: pace.Slot | None) -> SendResult:
    if slot is not None:
        await pace.wait(ctx.engine, slot)
    channel = ctx.herald.registry.channel(d.channel or "")
    settings = dict(message.delivery.senders.get(d.channel or "", {}))
    send = SendContext(str(run.message_id), str(run.id), d.customer, settings, ctx.transports.get(d.channel or ""))
    return await attempt(channel, d.payload or {}, send, ctx.herald.registry)


def _backoff(ctx: WorkerContext, tries: int, retry_after: float | None) -> float:
    cap = min(ctx.limits.backoff_cap, ctx.limits.backoff * 2 ** max(0, tries - 1))
    delay = random.uniform(0, cap)
    return max(delay, retry_after or 0.0)


@contextmanager
def _writing(engine: Engine) -> Iterator[Session]:
    """A transaction that reads what it then writes: on SQLite it takes the database's write lock first
    (``BEGIN IMMEDIATE``), so what it read stays true until it commits (on PostgreSQL the reads lock their
    rows with ``FOR UPDATE``)."""
    with transaction(engine) as s:
        if engine.dialect.name == "sqlite":
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield s


def _record(ctx: WorkerContext, message: Message, run: Run, claimed: list[Delivery], results: list[SendResult],
            people: dict[str, CustomerRow], token: str) -> dict[str, int]:
    """Record a batch's outcomes (``results[i]`` of ``claimed[i]``) in one transaction; how many ended in each.
    Only the claimant records: a row this token no longer holds (its lease ran out and another worker took it
    over) is left as it is and counts as ``lost_claim``. The incentives of the sent rows are issued and those
    of the failed ones released in the same transaction (the ledger's row locked after the deliveries')."""
    t = now()
    tally: dict[str, int] = defaultdict(int)
    with _writing(ctx.engine) as s:
        held = {row.id: row for row in s.exec(select(Delivery).where(
            col(Delivery.id).in_([d.id for d in claimed]), Delivery.claimed_by == token,
            Delivery.status == "sending").order_by(col(Delivery.id)).with_for_update()).all()}
        sent: list[Delivery] = []
        failed: list[Delivery] = []
        for d, result in zip(claimed, results, strict=True):
            row = held.get(d.id)
            if row is None:
                tally["lost_claim"] += 1
                continue
            outcome = _outcome(ctx, s, message, row, result, people.get(d.customer), t)
            tally[outcome] += 1
            if outcome == "sent":
                sent.append(row)
            elif outcome == "failed":
                failed.append(row)
        ledger = DbLedgerStore.joining(s.connection(), run.org_id)
        _issue(ctx, message, sent, ledger, t)
        for row in failed:
            _release(ctx, message, row, ledger)
        s.add_all(held.values())
    return dict(tally)


def _outcome(ctx: WorkerContext, s: Session, message: Message, row: Delivery, result: SendResult,
             person: CustomerRow | None, t: datetime) -> str:
    """Move a held row on by its send's result (the incentive is the caller's); the outcome's name."""
    row.attempts += 1
    row.claimed_by, row.claimed_until, row.updated_at = None, None, t
    if result.ok:
        row.status, row.provider_id, row.sent_at = "sent", result.provider_id, t
        return "sent"
    row.errors = [*row.errors, {"channel": row.channel, "outcome": result.outcome, "reason": result.reason,
                                "at": t.isoformat()}]
    if result.outcome == "transient" and row.attempts < ctx.limits.max_attempts:
        row.status = "retrying"
        row.next_attempt_at = t + timedelta(seconds=_backoff(ctx, row.attempts, result.retry_after))
        return "retrying"
    if result.unreachable and person is not None:
        _mark_unreachable(s, person.id, row.channel or "")
    return _fall_back(ctx, s, message, row, person)


def _mark_unreachable(s: Session, customer_id: int | None, channel: str) -> None:
    row = s.get(CustomerRow, customer_id)
    if row is not None:
        row.subscriptions = {**(row.subscriptions or {}), channel: DEAD_ADDRESS.get(channel, "invalid")}
        stamp(s, row)
        s.add(row)


def _fall_back(ctx: WorkerContext, session: Session, message: Message, row: Delivery,
               person: CustomerRow | None) -> str:
    """Move the delivery to its next fallback channel that renders (``pending`` again, due now), or mark it
    ``failed`` when none is left."""
    tried = [*row.tried, row.channel or ""]
    left = [c for c in row.decision.get("fallbacks", []) if c not in tried]
    for channel in left:
        rendering = _render(ctx, message, row, channel, person)
        if rendering is not None and rendering.ok:
            row.tried, row.channel, row.payload = tried, channel, dict(rendering.payload or {})
            if message.delivery.tiny_url:
                row.payload = track(session, row, base=tiny_base(ctx)) or row.payload
            row.status, row.attempts, row.next_attempt_at = "pending", 0, None
            return "fell_back"
        why = "no customer" if rendering is None else rendering.failure
        row.errors = [*row.errors, {"channel": channel, "outcome": "permanent", "reason": f"not rendered: {why}",
                                    "at": now().isoformat()}]
        tried.append(channel)
    row.tried, row.status = tried, "failed"
    return "failed"


def _render(ctx: WorkerContext, message: Message, row: Delivery, channel: str, person: CustomerRow | None) -> Any:
    from engine.model import Decision
    from service.storage.customers import to_engine_customer

    if person is None:
        return None
    decision = Decision(row.customer, True, variant=row.variant, channel=channel, incentive=row.incentive,
                        send_at=aware(row.send_at))
    return render_for(message, decision, channel, ctx.herald.registry, customer=to_engine_customer(person),
                      vars=row.decision.get("vars") or {}, preview=False)


def _issue(ctx: WorkerContext, message: Message, rows: list[Delivery], ledger: DbLedgerStore, at: datetime) -> None:
    """Make the reserved grants of these sent rows final in ``ledger`` (once per message and customer: issuing
    again returns the first), one after the other (they share the ledger's connection).

    They run on this thread's own event loop, not on the send loop: the ledger's calls block, and on the
    send loop one batch's issue waiting for the ledger's lock would stop the loop from handing another batch
    (the lock's holder) the result it waits for to commit."""
    spec = message.incentive
    rows = [r for r in rows if r.incentive]
    if spec is None or not rows:
        return
    kind = ctx.herald.registry.incentive(spec.kind)
    context = IncentiveContext(message, ledger, at)

    async def issue_all() -> list[Mapping[str, Any] | KeyError]:
        out: list[Mapping[str, Any] | KeyError] = []
        for row in rows:
            try:
                out.append(await kind.issue(spec.settings, row.incentive or {}, context))
            except KeyError as exc:
                out.append(exc)
        return out

    for row, issued in zip(rows, asyncio.run(issue_all()), strict=True):
        if isinstance(issued, KeyError):
            log.warning("delivery %s: incentive not issued: %s", row.key, issued)
            row.incentive = {**(row.incentive or {}), "issue_error": str(issued)}
        else:
            row.incentive = dict(issued)


def _release(ctx: WorkerContext, message: Message, row: Delivery, ledger: DbLedgerStore) -> None:
    """Give the reserved incentive back to ``ledger`` (the delivery failed or was cancelled)."""
    if not row.incentive or message.incentive is None:
        return
    kind = ctx.herald.registry.incentive(message.incentive.kind)
    kind.release(message.incentive.settings, row.incentive, IncentiveContext(message, ledger, now()))
    row.incentive = {**row.incentive, "released": True}
