"""The workflow: submit, approve, reject, withdraw, cancel, and the audit log.

* ``submit`` (marketer, admin): ``draft`` or ``rejected`` → ``awaiting_approval``, when the message's current
  version passes every check of PRODUCT.md §2 (all failures in one 422 otherwise).
* ``approve`` (approver; never the author): ``awaiting_approval`` → ``approved``, bound to the submitted
  version's hash (409 when it is not the one sent) and to a dry run of that version (``dry_run_id``).
* ``reject`` (approver; a reason required): ``awaiting_approval`` → ``rejected`` (editable; an edit makes it a
  draft).
* ``withdraw`` (approver): takes an approval back: ``approved`` or ``scheduled`` → ``awaiting_approval``; the
  approval becomes inactive and the submitted version waits for a decision again. It does not end the message.
* ``cancel`` (marketer, approver, admin): ends the send: ``approved``, ``scheduled`` or ``sending`` →
  ``cancelled`` (final; the approval stays on record as it was). A send under way stops: what was sent stays
  sent, every delivery not yet sent is cancelled and its incentive released.

Every transition is audited; a transition the status does not allow is 409 naming the status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import get, post
from litestar.params import JSONBody
from sqlmodel import Session, col, select

from service.http.auth import APPROVERS, EDITORS, READERS
from service.http.deps import Caller, DbDep, Id, IdPath, owned
from service.http.problems import Problem, conflict, error, forbidden, unprocessable
from service.http.routes.messages import message_out
from service.storage import audit
from service.storage.messages import (
    APPROVED,
    AWAITING,
    CANCELLED,
    DRAFT,
    REJECTED,
    SCHEDULED,
    SENDING,
    deactivate_approvals,
    snapshot,
    submission_problems,
)
from service.storage.tables import Approval, AuditEntry, MessageRow, MessageVersion, Run, User

Reason = Annotated[str, msgspec.Meta(max_length=2000)]


class ApproveIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An approval: the version hash the approver reviewed and the dry run they saw."""

    version_hash: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    dry_run_id: Id
    reason: Reason | None = None


class ReasonIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Why (required to reject)."""

    reason: Reason | None = None


def _message(s: Session, message_id: int, caller: Any, *allowed: str, action: str) -> MessageRow:
    m = owned(s, MessageRow, message_id, caller, "message", lock=True)
    if m.status not in allowed:
        raise conflict(f"cannot {action} a message that is {m.status} (only {' or '.join(allowed)})",
                       "illegal_transition")
    return m


def _version(s: Session, version_id: int | None) -> MessageVersion:
    v = s.get(MessageVersion, version_id) if version_id is not None else None
    assert v is not None
    return v


def _move(s: Session, m: MessageRow, to: str, action: str, caller: Any, reason: str | None,
          version_hash: str | None) -> None:
    assert m.id is not None
    audit.record(s, m.org_id, "message", m.id, action, m.status, to, caller.user_id, reason, version_hash)
    m.status = to
    s.add(m)
    s.flush()


@post("/messages/{message_id:int}/submit", operation_id="submitMessage", tags=["workflow"], guards=[EDITORS],
      sync_to_thread=True, status_code=200)
def submit(message_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """Send the message for approval: every check of the six steps runs on its current version and all the
    failures come back at once (422); otherwise it awaits approval with that version."""
    with db.tx() as s:
        m = _message(s, message_id, caller, DRAFT, REJECTED, action="submit")
        version = snapshot(s, m, caller.user_id)
        errors, warnings = submission_problems(db.herald, s, m, version)
        if errors:
            raise Problem(422, f"the message cannot be submitted: {len(errors)} problem(s)", errors,
                          code="submit_checks")
        m.submitted_version_id = version.id
        m.approved_version_id = None
        _move(s, m, AWAITING, "submitted", caller, None, version.hash)
        return {**message_out(s, m), "warnings": warnings}


@post("/messages/{message_id:int}/approve", operation_id="approveMessage", tags=["workflow"], guards=[APPROVERS],
      sync_to_thread=True, status_code=200)
def approve(message_id: IdPath, data: JSONBody[ApproveIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Approve the submitted version: ``version_hash`` must be its hash (409 otherwise) and ``dry_run_id`` a dry
    run of that very version (422 otherwise). The author never approves their own message (403)."""
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message", lock=True)
        if m.author_id == caller.user_id:
            raise forbidden("the author of a message cannot approve it (four eyes): ask another approver")
        m = _message(s, message_id, caller, AWAITING, action="approve")
        version = _version(s, m.submitted_version_id)
        if data.version_hash != version.hash:
            raise conflict(f"you reviewed version {data.version_hash[:12]}…, but version {version.number} "
                           f"({version.hash[:12]}…) awaits approval; review it again", "version_mismatch")
        run = s.exec(select(Run).where(Run.id == data.dry_run_id, Run.org_id == caller.org_id,
                                       Run.message_id == m.id)).first()
        if run is None or run.version_hash != version.hash or run.kind != "dry_run":
            why = ("no dry run with this id for this message" if run is None else
                   "this dry run evaluated another version of the message" if run.version_hash != version.hash else
                   f"run {run.id} is a {run.kind}, not a dry run")
            raise unprocessable("approve with the dry run of the submitted version",
                                [error("/dry_run_id", "dry_run", why)])
        assert m.id is not None and version.id is not None
        s.add(Approval(org_id=caller.org_id, message_id=m.id, version_id=version.id, version_hash=version.hash,
                       run_id=run.id, summary_hash=run.summary_hash, decision="approved", reason=data.reason,
                       approver_id=caller.user_id))
        m.approved_version_id = version.id
        _move(s, m, APPROVED, "approved", caller, data.reason, version.hash)
        return message_out(s, m)


@post("/messages/{message_id:int}/reject", operation_id="rejectMessage", tags=["workflow"], guards=[APPROVERS],
      sync_to_thread=True, status_code=200)
def reject(message_id: IdPath, data: JSONBody[ReasonIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Reject the submitted version, saying why (422 without a reason); the message becomes editable again."""
    reason = (data.reason or "").strip()
    if not reason:
        raise unprocessable("say why the message is rejected", [error("/reason", "required", "a reason is required")])
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message", lock=True)
        if m.author_id == caller.user_id:
            raise forbidden("the author of a message cannot decide on it (four eyes): ask another approver")
        m = _message(s, message_id, caller, AWAITING, action="reject")
        version = _version(s, m.submitted_version_id)
        assert m.id is not None and version.id is not None
        s.add(Approval(org_id=caller.org_id, message_id=m.id, version_id=version.id, version_hash=version.hash,
                       decision="rejected", reason=reason, approver_id=caller.user_id, active=False))
        m.submitted_version_id = None
        _move(s, m, REJECTED, "rejected", caller, reason, version.hash)
        return message_out(s, m)


@post("/messages/{message_id:int}/withdraw", operation_id="withdrawApproval", tags=["workflow"], guards=[APPROVERS],
      sync_to_thread=True, status_code=200)
def withdraw(message_id: IdPath, data: JSONBody[ReasonIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Withdraw the approval: the message awaits approval again with the same submitted version (to be approved
    or rejected anew). Not the same as cancelling the send."""
    with db.tx() as s:
        m = _message(s, message_id, caller, APPROVED, SCHEDULED, action="withdraw the approval of")
        version = _version(s, m.approved_version_id or m.submitted_version_id)
        deactivate_approvals(s, m)
        m.approved_version_id = None
        _move(s, m, AWAITING, "approval_withdrawn", caller, (data.reason or "").strip() or None, version.hash)
        return message_out(s, m)


@post("/messages/{message_id:int}/cancel", operation_id="cancelMessage", tags=["workflow"], guards=[READERS],
      sync_to_thread=True, status_code=200)
def cancel(message_id: IdPath, data: JSONBody[ReasonIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Cancel the send of an approved, scheduled or sending message (final: nothing more goes out; what was
    already sent stays sent)."""
    with db.tx() as s:
        m = _message(s, message_id, caller, APPROVED, SCHEDULED, SENDING, action="cancel")
        version = _version(s, m.approved_version_id or m.submitted_version_id)
        _move(s, m, CANCELLED, "cancelled", caller, (data.reason or "").strip() or None, version.hash)
        return message_out(s, m)


def audit_out(e: AuditEntry, names: dict[int, str]) -> dict[str, Any]:
    """An audit entry on the wire (``actor`` null when no user acted: a recipient or a provider did)."""
    actor = None if e.actor_id is None else {"id": e.actor_id, "name": names.get(e.actor_id)}
    return {"id": e.id, "action": e.action, "from": e.from_status, "to": e.to_status, "reason": e.reason,
            "version_hash": e.version_hash, "actor": actor, "at": e.at.isoformat()}


def user_names(session: Session, org_id: int, rows: Sequence[AuditEntry]) -> dict[int, str]:
    """The names of the org's users who acted in ``rows``."""
    ids = {e.actor_id for e in rows if e.actor_id is not None}
    if not ids:
        return {}
    return dict(session.exec(select(User.id, User.name).where(col(User.id).in_(ids), User.org_id == org_id)).all())  # type: ignore[arg-type]


@get("/messages/{message_id:int}/audit", operation_id="messageAudit", tags=["workflow"], guards=[READERS],
     sync_to_thread=True)
def message_audit(message_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """Every transition of the message, oldest first: who, when, from, to, why and the version hash."""
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message")
        assert m.id is not None
        rows = audit.entries(s, caller.org_id, "message", m.id)
        names = user_names(s, caller.org_id, rows)
        return {"items": [audit_out(e, names) for e in rows]}


HANDLERS = [submit, approve, reject, withdraw, cancel, message_audit]
