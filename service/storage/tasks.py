"""Call tasks: the rows the ``task`` transport writes (once per delivery key and channel), and what agents do
with them — list, claim, complete with an outcome. ``reached`` moves the task's delivery to ``delivered``;
``wrong_number`` records the customer's number as ``invalid`` on the channel (no further tasks for it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.storage.customer_changes import stamp
from service.storage.db import transaction
from service.storage.receipts import allowed_from
from service.storage.tables import CallTask, Delivery, utcnow
from service.storage.tables import Customer as CustomerRow

#: what an agent may record when a task is done
OUTCOMES = ("reached", "no_answer", "busy", "voicemail", "callback", "declined", "wrong_number")
#: task statuses, in order
STATUSES = ("open", "claimed", "done")
#: the longest note an agent may leave
MAX_NOTE = 4000


class TaskStateError(Exception):
    """The action does not fit the task's state: ``code`` says why (``not_found``, ``claimed_by_another``,
    ``not_claimed``, ``not_claimant``, ``done``)."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def record(session: Session, delivery: Delivery, channel: str, task: Mapping[str, Any]) -> int:
    """The task of ``delivery`` on ``channel``: the existing one's id, else a new open task's (an
    ``IntegrityError`` when another writer inserted it in between; writing again then finds it)."""
    found = session.exec(select(CallTask.id).where(CallTask.key == delivery.key, CallTask.channel == channel)).first()
    if found is not None:
        return found
    phone, queue = task.get("phone"), task.get("queue")
    row = CallTask(org_id=delivery.org_id, key=delivery.key, channel=channel, message_id=delivery.message_id,
                   run_id=delivery.run_id, customer=delivery.customer,
                   phone=str(phone)[:40] if phone else None, queue=str(queue)[:200] if queue else None, task=dict(task))
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def record_once(engine: Engine, key: str, channel: str, task: Mapping[str, Any]) -> int | None:
    """Write the task of the delivery ``key`` in a transaction of its own; its id, or None when no delivery has
    that key. A concurrent writer's row stands."""
    for _ in range(2):
        try:
            with transaction(engine) as s:
                delivery = s.exec(select(Delivery).where(Delivery.key == key)).first()
                if delivery is None:
                    return None
                return record(s, delivery, channel, task)
        except IntegrityError:  # another worker wrote the same key in between: read its row
            continue
    raise RuntimeError(f"call task of delivery {key} on {channel}: could not be written")


def listing(session: Session, org_id: int, *, status: str | None, message_id: int | None, after: int,
            limit: int) -> list[CallTask]:
    """Up to ``limit`` tasks of the org after id ``after``, oldest first, filtered by status and message."""
    stmt = select(CallTask).where(CallTask.org_id == org_id, col(CallTask.id) > after)
    if status is not None:
        stmt = stmt.where(CallTask.status == status)
    if message_id is not None:
        stmt = stmt.where(CallTask.message_id == message_id)
    return list(session.exec(stmt.order_by(col(CallTask.id)).limit(limit)).all())


def _get(session: Session, org_id: int, task_id: int) -> CallTask:
    session.expire_all()
    row = session.exec(select(CallTask).where(CallTask.id == task_id, CallTask.org_id == org_id)).first()
    if row is None:
        raise TaskStateError("not_found", "no task with this id in your org")
    return row


def claim(session: Session, org_id: int, task_id: int, user_id: int) -> CallTask:
    """Take the task for ``user_id`` (atomically: the database checks it is open). Claiming a task one holds
    already returns it; one someone else holds, or one done, raises :class:`TaskStateError`."""
    result = session.execute(update(CallTask).where(
        col(CallTask.id) == task_id, col(CallTask.org_id) == org_id, col(CallTask.status) == "open")
        .values(status="claimed", claimed_by=user_id, claimed_at=utcnow()))
    row = _get(session, org_id, task_id)
    if (result.rowcount or 0) == 1 or (row.status == "claimed" and row.claimed_by == user_id):  # type: ignore[attr-defined]
        return row
    if row.status == "done":
        raise TaskStateError("done", f"task {task_id} is done already (outcome {row.outcome})")
    raise TaskStateError("claimed_by_another", f"task {task_id} is claimed by another user")


def complete(session: Session, org_id: int, task_id: int, user_id: int, outcome: str, note: str | None) -> CallTask:
    """Record the outcome of a task ``user_id`` holds (``outcome`` one of :data:`OUTCOMES`); ``reached`` moves
    its delivery from ``sent`` to ``delivered``, ``wrong_number`` marks the customer's number ``invalid`` on the
    channel. Completing again with the same outcome returns the task; anything else that does not fit raises
    :class:`TaskStateError`."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    result = session.execute(update(CallTask).where(
        col(CallTask.id) == task_id, col(CallTask.org_id) == org_id, col(CallTask.status) == "claimed",
        col(CallTask.claimed_by) == user_id).values(status="done", outcome=outcome, note=note, completed_at=utcnow()))
    row = _get(session, org_id, task_id)
    if (result.rowcount or 0) != 1:  # type: ignore[attr-defined]
        if row.status == "done" and row.claimed_by == user_id and row.outcome == outcome:
            return row
        if row.status == "done":
            raise TaskStateError("done", f"task {task_id} is done already (outcome {row.outcome})")
        if row.status == "open":
            raise TaskStateError("not_claimed", f"claim task {task_id} before completing it")
        raise TaskStateError("not_claimant", f"task {task_id} is claimed by another user: only they may complete it")
    if outcome == "reached":
        session.execute(update(Delivery).where(col(Delivery.key) == row.key, col(Delivery.org_id) == org_id,
                                               col(Delivery.status).in_(allowed_from("delivered")))
                        .values(status="delivered", updated_at=utcnow()))
    elif outcome == "wrong_number":
        person = session.exec(select(CustomerRow).where(CustomerRow.org_id == org_id,
                                                        CustomerRow.external_id == row.customer)).first()
        if person is not None and person.deleted_at is None:
            person.subscriptions = {**(person.subscriptions or {}), row.channel: "invalid"}
            person.updated_at = utcnow()
            stamp(session, person)
            session.add(person)
    return row


def task_out(row: CallTask) -> dict[str, Any]:
    """A task on the wire."""
    return {"id": row.id, "status": row.status, "channel": row.channel, "message_id": row.message_id,
            "run_id": row.run_id, "customer": row.customer, "phone": row.phone, "queue": row.queue,
            "task": row.task, "claimed_by": row.claimed_by,
            "claimed_at": row.claimed_at.isoformat() if row.claimed_at else None,
            "outcome": row.outcome, "note": row.note,
            "completed_at": row.completed_at.isoformat() if row.completed_at else None,
            "created_at": row.created_at.isoformat()}
