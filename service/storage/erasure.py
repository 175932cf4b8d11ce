"""Erasing a deleted customer's personal data from what runs kept about them, keeping every count true.

What a run wrote about a recipient holds their contacts and what was said to them: the rendered message of
a delivery (and of its decision), the rules' template variables and trace, the outbox row of the ``log``
transport, a call task's number and script, an ad export row's hashed identifiers, a dry run's stored
decision. :func:`erase_customer` clears those fields in one statement per table and leaves the rows, their
statuses, channels, variants, reasons and timestamps — so reports, frequency caps and idempotency keys stay
as they were. Export files already written, and what providers received, are outside Herald.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from service.storage.tables import AdExportRow, CallTask, Delivery, OutboxMessage, Run, RunDecision

#: what stays of a decision, a delivery's or a dry run's (no rendered content, no trace of attribute values, no
#: template variables)
KEPT_DECISION = ("customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "send_at",
                 "rules_versions", "fired")


def _kept(data: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in (data or {}).items() if k in keys} | {"erased": True}


def erase_customer(session: Session, org_id: int, external_id: str) -> dict[str, int]:
    """Clear the personal data runs kept about ``external_id`` of ``org_id``; how many rows of each kind."""
    out: dict[str, int] = {}
    rows = session.execute(select(col(Delivery.id), col(Delivery.key), col(Delivery.decision)).where(
        col(Delivery.org_id) == org_id, col(Delivery.customer) == external_id)).all()
    keys = [key for _, key, _ in rows]
    for did, _, decision in rows:
        session.execute(update(Delivery).where(col(Delivery.id) == did)
                        .values(payload=None, decision=_kept(decision, KEPT_DECISION)))
    out["deliveries"] = len(rows)
    out["outbox"] = out["call_tasks"] = out["ad_exports"] = 0
    for start in range(0, len(keys), 500):
        part = keys[start:start + 500]
        out["outbox"] += _count(session.execute(update(OutboxMessage).where(col(OutboxMessage.key).in_(part))
                                                .values(to="", body={"erased": True})))
        out["call_tasks"] += _count(session.execute(update(CallTask).where(
            col(CallTask.org_id) == org_id, col(CallTask.key).in_(part)).values(phone=None, task={"erased": True})))
        out["ad_exports"] += _count(session.execute(update(AdExportRow).where(
            col(AdExportRow.org_id) == org_id, col(AdExportRow.key).in_(part)).values(email=None, phone=None)))
    stored = session.execute(select(col(RunDecision.run_id), col(RunDecision.position), col(RunDecision.data))
                             .join(Run, col(Run.id) == col(RunDecision.run_id))
                             .where(col(Run.org_id) == org_id, col(RunDecision.customer) == external_id)).all()
    for run_id, position, data in stored:
        session.execute(update(RunDecision).where(col(RunDecision.run_id) == run_id,
                                                  col(RunDecision.position) == position)
                        .values(data=_kept(data, KEPT_DECISION)))
    out["dry_run_decisions"] = len(stored)
    return out


def _count(result: Any) -> int:
    return int(result.rowcount or 0)
