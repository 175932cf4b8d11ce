"""The audit log: an append-only record of every transition (who, when, from, to, why, version hash).

There is deliberately no update or delete here: an entry, once written, is history.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from service.storage.tables import AuditEntry

#: the longest reason kept (the column's size)
MAX_REASON = 2000


def record(session: Session, org_id: int, entity: str, entity_id: int, action: str, from_status: str | None,
           to_status: str | None, actor_id: int | None, reason: str | None = None,
           version_hash: str | None = None) -> AuditEntry:
    """Append one entry to the audit log (in the caller's transaction: it is kept exactly when the change is)."""
    entry = AuditEntry(org_id=org_id, entity=entity, entity_id=entity_id, action=action, from_status=from_status,
                       to_status=to_status, actor_id=actor_id,
                       reason=reason[:MAX_REASON] if reason is not None else None, version_hash=version_hash)
    session.add(entry)
    session.flush()
    return entry


def entries(session: Session, org_id: int, entity: str, entity_id: int) -> Sequence[AuditEntry]:
    """Every entry about one entity of the org, oldest first."""
    return session.exec(select(AuditEntry).where(AuditEntry.org_id == org_id, AuditEntry.entity == entity,
                                                 AuditEntry.entity_id == entity_id)
                        .order_by(col(AuditEntry.id))).all()
