"""Send runs, from approval to the last chunk: what the durable workflows of :mod:`service.worker.durable` do,
as plain functions over the database (each is safe to repeat: a step that crashed runs again).

* :func:`schedule_approved` — an approved message gets its next send run (``scheduled``), when its schedule
  says (now, its ``at``, or the next occurrence of its RRULE inside the campaign window).
* :func:`begin` — the run starts: its audience is resolved now (a filter-based audience again at every
  occurrence) and frozen in ``run_member``; the number of chunks comes back.
* :func:`prepare_chunk` — the chunk's recipients are decided with the same façade and evaluator as the dry
  run of the approved version (incentives reserved, the chosen channel rendered) and each decision becomes a
  delivery row with its idempotency key, before anything is sent.
* :func:`finish` — the run's summary; the message is ``sent`` (or ``scheduled`` again for its next
  occurrence).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, update
from sqlmodel import Session, col, select

from engine.contracts import SendContext
from engine.errors import EngineError
from engine.model import Message
from engine.scheduling import run_time_or_none
from service.storage import audit, messages
from service.storage.audience import audience_frame, customers_frame
from service.storage.db import transaction
from service.storage.ledger import DbLedgerStore
from service.storage.runs import audience_of
from service.storage.tables import Approval, Delivery, MessageRow, MessageVersion, Run, RunMember
from service.worker import test_sends
from service.worker.context import WorkerContext
from service.worker.links import track

log = logging.getLogger(__name__)

SENDING, SENT, FAILED = messages.SENDING, messages.SENT, messages.FAILED
#: delivery statuses that still wait for a send
WAITING = ("pending", "retrying", "sending")
#: delivery statuses of a provider that took the message (receipts move sent on to these)
ACCEPTED = ("sent", "delivered", "opened", "clicked")
MEMBER_BATCH = 5_000


def now() -> datetime:
    """The current instant (UTC)."""
    return datetime.now(UTC)


def aware(t: datetime | None) -> datetime | None:
    """``t`` with UTC as its zone when the database gave it back naive (SQLite)."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def delivery_key(message_id: int, run_id: int, customer: str) -> str:
    """The idempotency key of one delivery: derived from (message, run, customer) only, the same one the
    channel hands its provider (``SendContext.idempotency_key``)."""
    return SendContext(str(message_id), str(run_id), customer).idempotency_key


def approved_message(ctx: WorkerContext, session: Session, run: Run) -> Message:
    """The engine message of the run's (approved, immutable) version, loaded once per process."""
    with ctx.lock:
        cached = ctx.messages.get(run.version_id)
    if cached is not None:
        return cached
    version = session.get(MessageVersion, run.version_id)
    assert version is not None
    message = messages.load_version(ctx.herald, session, run.org_id, version)
    with ctx.lock:
        ctx.messages[run.version_id] = message
    return message


# -- scheduling -------------------------------------------------------------------------------------------


def _approver(session: Session, m: MessageRow) -> int:
    approval = session.exec(select(Approval).where(Approval.message_id == m.id, Approval.active == True,  # noqa: E712
                                                   Approval.decision == "approved")
                            .order_by(col(Approval.id).desc())).first()
    return approval.approver_id if approval is not None else m.author_id


def _next_run(ctx: WorkerContext, session: Session, m: MessageRow, after: datetime,
              strictly: bool = False) -> Run | None:
    """A ``scheduled`` send run of ``m``'s approved version at its next run time at or after ``after``
    (``None`` when its schedule has none left)."""
    version = session.get(MessageVersion, m.approved_version_id)
    assert version is not None and m.id is not None and version.id is not None
    message = messages.load_version(ctx.herald, session, m.org_id, version)
    if strictly and message.schedule.kind != "recurring":
        return None  # a one-off message has one run
    if message.delivery.tiny_url and not ctx.limits.public_url:
        raise EngineError("the message uses tiny URLs but HERALD_PUBLIC_URL is not set: recipients could not "
                          "follow its links")
    start = after + timedelta(seconds=1) if strictly else after
    when = run_time_or_none(message.schedule, message.campaign, start)
    if when is None:
        return None
    run = Run(org_id=m.org_id, message_id=m.id, version_id=version.id, version_hash=version.hash, kind="send",
              at=when, audience="stored", summary={}, summary_hash="", created_by=_approver(session, m),
              status="scheduled")
    session.add(run)
    session.flush()
    return run


def schedule_approved(ctx: WorkerContext, at: datetime | None = None) -> list[int]:
    """Give every ``approved`` message its next send run and make it ``scheduled`` (one transaction each; a
    message another worker took first is left to it). A message whose schedule has no run left (an ``at`` in
    the past, a recurrence past the campaign's end) becomes ``failed`` with the reason in the audit log."""
    at = at or now()
    with transaction(ctx.engine) as s:
        ids = list(s.exec(select(MessageRow.id).where(MessageRow.status == messages.APPROVED)).all())
    made = []
    for mid in ids:
        with transaction(ctx.engine) as s:
            taken = s.execute(update(MessageRow).where(col(MessageRow.id) == mid,
                                                       col(MessageRow.status) == messages.APPROVED)
                              .values(status=messages.SCHEDULED)).rowcount  # type: ignore[attr-defined]
            if taken != 1:
                continue
            m = s.get(MessageRow, mid)
            assert m is not None and m.id is not None
            try:
                run = _next_run(ctx, s, m, at)
            except EngineError as exc:
                run, why = None, f"the approved version cannot be sent: {exc}"
            else:
                why = "its schedule has no run time left (past, or after the campaign's end)"
            if run is None:
                m.status = FAILED
                audit.record(s, m.org_id, "message", m.id, "schedule_failed", messages.APPROVED, FAILED,
                             _approver(s, m), why)
                continue
            audit.record(s, m.org_id, "message", m.id, "scheduled", messages.APPROVED, messages.SCHEDULED,
                         run.created_by, f"run {run.id} at {run.at.isoformat()}")
            assert run.id is not None
            made.append(run.id)
    return made


def runs_to_start(ctx: WorkerContext) -> list[tuple[int, datetime]]:
    """Send and test runs whose durable workflow is not started yet: (run id, run time)."""
    with transaction(ctx.engine) as s:
        rows = s.exec(select(Run.id, Run.at).where(col(Run.kind).in_(("send", test_sends.TEST)),
                                                   Run.status == "scheduled",
                                                   Run.workflow_started == False)).all()  # noqa: E712
    return [(rid, aware(at)) for rid, at in rows]  # type: ignore[misc]


def mark_started(ctx: WorkerContext, run_id: int) -> None:
    """Remember that the run's workflow exists (starting it again would only find it)."""
    with transaction(ctx.engine) as s:
        s.execute(update(Run).where(col(Run.id) == run_id).values(workflow_started=True))


# -- a run ------------------------------------------------------------------------------------------------


def begin(ctx: WorkerContext, run_id: int) -> int:
    """Start the run: resolve its audience now and freeze it (once: a repeat finds it frozen); the message and
    the run become ``sending`` (a test run freezes its points of contact and leaves the message alone).
    Returns the number of chunks (0 for a cancelled message or run)."""
    with transaction(ctx.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        m = s.get(MessageRow, run.message_id)
        assert m is not None and m.id is not None
        if run.status == "cancelled" or m.status == messages.CANCELLED:
            run.status, run.finished_at = "cancelled", run.finished_at or now()
            return 0
        if run.size is None and test_sends.is_test(run):
            run.size, run.status, run.started_at = test_sends.freeze(s, run), SENDING, now()
        elif run.size is None:
            version = s.get(MessageVersion, run.version_id)
            assert version is not None
            frame = audience_frame(ctx.engine, run.org_id, ctx.herald, audience_of(version) or {})
            ids = frame.get_column("customer.id").to_list() if frame.height else []
            for start in range(0, len(ids), MEMBER_BATCH):
                s.execute(insert(RunMember), [{"run_id": run_id, "position": start + i, "customer": c}
                                              for i, c in enumerate(ids[start:start + MEMBER_BATCH])])
            run.size, run.status, run.started_at = len(ids), SENDING, now()
            if m.status == messages.SCHEDULED:
                audit.record(s, m.org_id, "message", m.id, "sending", m.status, SENDING, run.created_by,
                             f"run {run_id}: {len(ids)} recipients")
                m.status = SENDING
        size = run.size
    return -(-size // ctx.limits.chunk_size)


def chunk_members(ctx: WorkerContext, run_id: int, chunk: int) -> list[str]:
    """The customers of chunk ``chunk`` of the run (positions ``chunk × chunk_size`` onwards)."""
    lo = chunk * ctx.limits.chunk_size
    with transaction(ctx.engine) as s:
        return list(s.exec(select(RunMember.customer).where(
            RunMember.run_id == run_id, col(RunMember.position) >= lo,
            col(RunMember.position) < lo + ctx.limits.chunk_size).order_by(col(RunMember.position))).all())


def history(session: Session, org_id: int, customers: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """What the org really sent these customers (frequency caps read it): customer → ``[{channel, sent_at}]``;
    test sends to the points of contact are not sends to customers."""
    out: dict[str, list[dict[str, Any]]] = {}
    rows = session.exec(select(Delivery.customer, Delivery.channel, Delivery.sent_at)
                        .join(Run, col(Run.id) == col(Delivery.run_id)).where(
        Delivery.org_id == org_id, col(Delivery.customer).in_(list(customers)), Run.kind == "send",
        col(Delivery.status).in_(ACCEPTED), col(Delivery.sent_at).is_not(None))).all()
    for customer, channel, sent_at in rows:
        out.setdefault(customer, []).append({"channel": channel, "sent_at": aware(sent_at)})
    return out


def prepare_chunk(ctx: WorkerContext, run_id: int, chunk: int) -> int:
    """Decide the chunk's recipients that have no delivery row yet and write one row per decision (the
    idempotency key unique: a repeat writes nothing twice). Returns how many rows were written."""
    members = chunk_members(ctx, run_id, chunk)
    with transaction(ctx.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        done = set(s.exec(select(Delivery.customer).where(Delivery.run_id == run_id, Delivery.chunk == chunk)).all())
        todo = [c for c in members if c not in done]
        if not todo:
            return 0
        message = approved_message(ctx, s, run)
        test = s.get(MessageVersion, run.version_id) if test_sends.is_test(run) else None
        seen = history(s, run.org_id, todo) if test is None else {}
    if test is not None:  # the points of contact: no rules, no audience, a preview incentive
        values = test_sends.decide(ctx.herald.registry, message, test, DbLedgerStore(ctx.engine, run.org_id), todo)
        _insert_new(ctx, [{**_base(run, chunk, v["customer"]), **v} for v in values], tracked=message.delivery.tiny_url)
        return len(values)
    frame = customers_frame(ctx.engine, run.org_id, ctx.herald, todo)
    at = aware(run.at) or now()
    decisions = ctx.herald.evaluate(message, frame, at=at, mode="per_recipient", preview=False, render=True,
                                    history=seen, ledger=DbLedgerStore(ctx.engine, run.org_id))
    rows = [_row(run, chunk, d) for d in decisions]
    missing = set(todo) - {r["customer"] for r in rows}  # deleted since the run started
    stamp = now()
    rows += [{**_base(run, chunk, c), "status": "excluded", "excluded_reason": "customer_deleted",
              "updated_at": stamp} for c in sorted(missing)]
    _insert_new(ctx, rows, tracked=message.delivery.tiny_url)
    return len(rows)


def tiny_base(ctx: WorkerContext) -> str:
    """Where tiny URLs point (``HERALD_PUBLIC_URL``); a message with tiny URLs on is not sent without it."""
    if not ctx.limits.public_url:
        raise RuntimeError("the message uses tiny URLs but HERALD_PUBLIC_URL is not set: recipients could not "
                           "follow its links")
    return ctx.limits.public_url


def _base(run: Run, chunk: int, customer: str) -> dict[str, Any]:
    assert run.id is not None
    return {"org_id": run.org_id, "message_id": run.message_id, "run_id": run.id, "chunk": chunk,
            "customer": customer, "key": delivery_key(run.message_id, run.id, customer), "tried": [], "errors": [],
            "decision": {}, "attempts": 0}


def _row(run: Run, chunk: int, d: Any) -> dict[str, Any]:
    row = _base(run, chunk, d.customer)
    decision = d.as_dict()
    decision.pop("trace", None)
    decision.pop("rendered", None)
    decision["vars"] = dict(d.vars)
    row.update(decision=decision, updated_at=now(), variant=d.variant, incentive=decision["incentive"])
    if not d.included:
        return {**row, "status": "excluded", "excluded_reason": d.excluded_reason}
    rendered = d.rendered or {}
    return {**row, "status": "pending", "channel": rendered.get("channel", d.channel),
            "payload": dict(rendered.get("payload") or {}), "send_at": d.send_at or aware(run.at)}


def _insert_new(ctx: WorkerContext, rows: list[dict[str, Any]], *, tracked: bool = False) -> None:
    """Insert delivery rows, leaving alone any whose key is already there; with ``tracked``, the links of each
    payload become the recipient's tiny URLs first (recorded in the same transaction)."""
    if not rows:
        return
    table = Delivery.__table__  # type: ignore[attr-defined]
    if ctx.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    columns = {k for r in rows for k in r}
    rows = [{**dict.fromkeys(columns), **r} for r in rows]  # one statement needs the same keys in every row
    base = tiny_base(ctx) if tracked else ""
    with transaction(ctx.engine) as s:
        if tracked:
            new = _new_keys(s, [r["key"] for r in rows])
            for r in rows:
                if r["payload"] and r["key"] in new:
                    r["payload"] = track(s, r, base=base)
        for start in range(0, len(rows), MEMBER_BATCH):
            s.execute(upsert(table).on_conflict_do_nothing(index_elements=["key"]), rows[start:start + MEMBER_BATCH])


def _new_keys(session: Session, keys: list[str]) -> set[str]:
    """The keys that have no delivery row yet (a repeated step must not record links for rows it keeps)."""
    found = set(session.exec(select(Delivery.key).where(col(Delivery.key).in_(keys))).all())
    return set(keys) - found


def counts(session: Session, run_id: int) -> dict[str, Any]:
    """The run's deliveries by status, by channel (accepted ones) and by exclusion reason."""
    status = dict(session.execute(select(Delivery.status, func.count()).where(Delivery.run_id == run_id)
                                  .group_by(Delivery.status)).all())  # type: ignore[arg-type]
    channels = dict(session.execute(select(Delivery.channel, func.count()).where(
        Delivery.run_id == run_id, col(Delivery.status).in_(ACCEPTED)).group_by(Delivery.channel)).all())  # type: ignore[arg-type]
    excluded = dict(session.execute(select(Delivery.excluded_reason, func.count()).where(
        Delivery.run_id == run_id, Delivery.status == "excluded").group_by(Delivery.excluded_reason)).all())  # type: ignore[arg-type]
    return {"statuses": status, "channels": channels, "excluded": excluded}


def finish(ctx: WorkerContext, run_id: int, errors: Sequence[str] = ()) -> str:
    """End the run: its summary and status (``sent``; ``failed`` when nothing could be sent to an audience that
    had recipients to send to, or when a chunk failed for good — ``errors`` says which and why); the message is
    ``sent``, or ``scheduled`` again with its next run (a test run leaves the message alone)."""
    with transaction(ctx.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        m = s.get(MessageRow, run.message_id)
        assert m is not None and m.id is not None
        if run.finished_at is not None:
            return run.status
        c = counts(s, run_id)
        sent = sum(n for st, n in c["statuses"].items() if st in ACCEPTED)
        failed = c["statuses"].get("failed", 0)
        cancelled = run.status == "cancelled" or m.status == messages.CANCELLED
        run.status = "cancelled" if cancelled else FAILED if errors or (failed and not sent) else SENT
        run.summary = {**c, "audience": run.size, "sent": sent, "failed": failed, "errors": list(errors)}
        run.finished_at = now()
        if m.status == SENDING and not test_sends.is_test(run):
            nxt = _next_run(ctx, s, m, aware(run.at) or now(), strictly=True)
            to = messages.SCHEDULED if nxt is not None else run.status
            why = f"run {run_id}: {sent} sent, {failed} failed" + (f"; next run {nxt.id} at {nxt.at.isoformat()}"
                                                                     if nxt is not None else "")
            audit.record(s, m.org_id, "message", m.id, "run_finished", m.status, to, run.created_by, why)
            m.status = to
        return run.status
