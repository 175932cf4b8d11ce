"""Messages as the engine sees them: the explicit mapping from rows to message data, immutable versions
under one hash, and what every edit does to the workflow.

A message's **document** is the engine's message data (the shape of ``rules/examples/*.message.yaml``,
checked by :class:`engine.messages.MessageFile`) plus what the engine does not load but an approval covers:
``audience`` (the include and exclude groups as snapshots) and ``poc`` (the points of contact). Rules are
pinned as ``name@version``. :func:`version_hash` of the document is the version an approver approves; any
edit makes a new one and voids the approval (:func:`content_changed`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from engine.errors import MessageFileError, Problem
from engine.model import Message
from engine.runtime import Herald
from service.storage import audit
from service.storage.rulesets import StoredRulesets, latest, split_ref
from service.storage.tables import (
    Approval,
    AudienceGroup,
    Campaign,
    CouponCode,
    Creative,
    DeliverySettingsRow,
    Incentive,
    MessageAudience,
    MessageRow,
    MessageVersion,
    Schedule,
    utcnow,
)

DRAFT, AWAITING, APPROVED, REJECTED = "draft", "awaiting_approval", "approved", "rejected"
SCHEDULED, CANCELLED = "scheduled", "cancelled"
SENDING, SENT, FAILED = "sending", "sent", "failed"
#: the statuses in which a message's steps may change (an edit of a submitted or approved one makes it a draft)
EDITABLE = (DRAFT, AWAITING, APPROVED, REJECTED)
#: the document keys that are not engine message data
NOT_ENGINE = ("audience", "poc")


class NotEditable(Exception):
    """The message's status does not allow changes (it is being sent, was sent, or was cancelled)."""

    def __init__(self, status: str):
        super().__init__(f"a message in status {status} cannot change; only {', '.join(EDITABLE)} messages can")
        self.status = status


def engine_id(message: MessageRow) -> str:
    """The message's id in engine data (``m<id>``)."""
    return f"m{message.id}"


def group_block(session: Session, group: AudienceGroup) -> dict[str, Any]:
    """One audience group in a document, as helper A's storage snapshots it."""
    from service.storage.audience import group_snapshot

    return group_snapshot(session, group)


def _no_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def campaign_block(c: Campaign) -> dict[str, Any]:
    """The engine's ``message.campaign`` block of a campaign row."""
    return _no_none({"id": f"c{c.id}", "name": c.name, "starts": c.starts.isoformat() if c.starts else None,
                     "ends": c.ends.isoformat() if c.ends else None, "objective": c.objective})


def pinned_rules(session: Session, message: MessageRow) -> dict[str, str]:
    """The message's rules, each pinned to a version: ``name@version`` as given, else the name's latest
    stored version (a name with none stays as it is: loading reports it)."""
    out = {}
    for kind, ref in sorted(message.rules.items()):
        name, version = split_ref(ref)
        row = None if version else latest(session, message.org_id, name)
        out[kind] = f"{name}@{row.version}" if row is not None else ref
    return out


def creative_rows(session: Session, message: MessageRow) -> Sequence[Creative]:
    """The message's creatives in the order they were made (the order of the document's ``creatives``)."""
    return session.exec(select(Creative).where(Creative.message_id == message.id, Creative.org_id == message.org_id)
                        .order_by(col(Creative.id))).all()


def incentive_block(session: Session, message: MessageRow) -> dict[str, Any] | None:
    """The engine's ``incentive`` block: the incentive's kind and settings, uploaded codes as ``codes``."""
    if message.incentive_id is None:
        return None
    inc = session.exec(select(Incentive).where(Incentive.id == message.incentive_id,
                                               Incentive.org_id == message.org_id)).first()
    if inc is None:
        return None
    settings = dict(inc.settings)
    codes = session.exec(select(CouponCode.code).where(CouponCode.incentive_id == inc.id)
                         .order_by(col(CouponCode.id))).all()
    if codes:
        settings["codes"] = list(codes)
    return {"kind": inc.kind, "settings": settings}


def schedule_block(row: Schedule | None) -> dict[str, Any]:
    """The engine's ``schedule`` block (``immediate`` when none was set)."""
    if row is None:
        return {"kind": "immediate"}
    return _no_none({"kind": row.kind, "at": row.at, "rrule": row.rrule, "local_time": row.local_time,
                     "quiet_hours": list(row.quiet_hours) if row.quiet_hours else None})


def delivery_block(row: DeliverySettingsRow | None) -> dict[str, Any]:
    """The engine's ``delivery`` block (all off, no senders, when none was set)."""
    if row is None:
        return {"send_to_dnd": False, "send_to_control": False, "tiny_url": False, "senders": {}}
    return {"send_to_dnd": row.send_to_dnd, "send_to_control": row.send_to_control, "tiny_url": row.tiny_url,
            "senders": dict(row.senders)}


def audience_groups(session: Session, message: MessageRow) -> dict[str, list[AudienceGroup]]:
    """The message's include and exclude groups, by group id."""
    rows = session.exec(select(MessageAudience, AudienceGroup)
                        .where(MessageAudience.message_id == message.id, MessageAudience.org_id == message.org_id,
                               AudienceGroup.id == MessageAudience.group_id,
                               AudienceGroup.org_id == message.org_id)
                        .order_by(col(AudienceGroup.id))).all()
    out: dict[str, list[AudienceGroup]] = {"include": [], "exclude": []}
    for link, group in rows:
        out[link.mode].append(group)
    return out


def message_document(session: Session, message: MessageRow) -> dict[str, Any]:
    """Everything an approval covers, as data: the engine's message data (see :func:`engine_data`) plus
    ``audience`` (``include`` / ``exclude`` group snapshots) and ``poc`` (points of contact)."""
    campaign = session.get(Campaign, message.campaign_id)
    assert campaign is not None and campaign.org_id == message.org_id
    delivery = session.get(DeliverySettingsRow, message.id)
    doc: dict[str, Any] = {
        "message": {"id": engine_id(message), "title": message.title, "type": message.type,
                    "campaign": campaign_block(campaign), "strategy": list(message.strategy)},
        "rules": pinned_rules(session, message),
        "channels": list(message.channels),
        "creatives": [{"channel": c.channel, "variant": c.variant, "content": c.content}
                      for c in creative_rows(session, message)],
        "schedule": schedule_block(session.get(Schedule, message.id)),
        "delivery": delivery_block(delivery),
        "optimizers": dict(message.optimizers),
        "audience": {mode: [group_block(session, g) for g in groups]
                     for mode, groups in audience_groups(session, message).items()},
        "poc": list(delivery.poc) if delivery is not None else [],
    }
    incentive = incentive_block(session, message)
    if incentive is not None:
        doc["incentive"] = incentive
    return doc


def version_hash(document: Mapping[str, Any]) -> str:
    """The version of a document: the sha256 (hex) of its canonical JSON (keys sorted, no spaces)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def engine_data(document: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a document ``Herald.load_message_data`` takes (without ``audience`` and ``poc``)."""
    return {k: v for k, v in document.items() if k not in NOT_ENGINE}


def snapshot(session: Session, message: MessageRow, user_id: int) -> MessageVersion:
    """The message's version as it is now: a new immutable ``MessageVersion`` when its hash is new, else the
    existing one; ``message.current_version_id`` is set to it."""
    document = message_document(session, message)
    digest = version_hash(document)
    version = session.exec(select(MessageVersion).where(MessageVersion.message_id == message.id,
                                                        MessageVersion.hash == digest)).first()
    if version is None:
        last = session.exec(select(func.max(MessageVersion.number))
                            .where(MessageVersion.message_id == message.id)).one()
        assert message.id is not None
        version = MessageVersion(org_id=message.org_id, message_id=message.id, number=(last or 0) + 1, hash=digest,
                                 document=document, created_by=user_id)
        session.add(version)
        session.flush()
    message.current_version_id = version.id
    session.add(message)
    return version


def load_document(herald: Herald, session: Session, org_id: int, document: Mapping[str, Any], *,
                  source: str = "<api>") -> Message:
    """The engine's Message of a document, its rulesets from the org's stored ones, with a fresh façade (so one
    org's messages are never compared with another's); ``MessageFileError`` lists every problem."""
    fresh = Herald(herald.registry, herald.catalogue)
    resolver = StoredRulesets(session, org_id, herald.registry, herald.catalogue)
    return fresh.load_message_data(engine_data(document), resolver=resolver, source=source)


def load_version(herald: Herald, session: Session, org_id: int, version: MessageVersion) -> Message:
    """The engine's Message of a stored version (its pinned rulesets); ``MessageFileError`` when it no longer
    loads (e.g. a plugin it needs is gone)."""
    if version.org_id != org_id:
        raise LookupError("the version belongs to another org")
    return load_document(herald, session, org_id, version.document,
                         source=f"m{version.message_id}@v{version.number}")


def content_changed(session: Session, message: MessageRow, user_id: int) -> MessageVersion:
    """After any edit of any step: bump the lock, take a new snapshot and, when the message was submitted,
    approved or rejected, make it a draft again (voiding its approval), with an audit entry.
    :class:`NotEditable` for a message that may not change (the transaction then changes nothing)."""
    if message.status not in EDITABLE:
        raise NotEditable(message.status)
    message.lock += 1
    message.updated_at = utcnow()
    version = snapshot(session, message, user_id)
    was = message.status
    if was != DRAFT:
        reason = {AWAITING: "edited while awaiting approval: the submission is void",
                  APPROVED: "edited after approval: the approval is void",
                  REJECTED: "edited after rejection"}[was]
        message.status = DRAFT
        message.submitted_version_id = None
        message.approved_version_id = None
        voided = deactivate_approvals(session, message)
        if voided:
            reason += f" ({voided} approval(s) voided)"
        assert message.id is not None
        audit.record(session, message.org_id, "message", message.id, "edited", was, DRAFT, user_id, reason,
                     version.hash)
    session.add(message)
    return version


def deactivate_approvals(session: Session, message: MessageRow) -> int:
    """Mark the message's active approvals inactive; how many there were."""
    result = session.execute(update(Approval).where(col(Approval.message_id) == message.id,
                                                    col(Approval.org_id) == message.org_id,
                                                    col(Approval.active).is_(True)).values(active=False))
    return int(getattr(result, "rowcount", 0) or 0)


def campaign_changed(session: Session, campaign: Campaign, user_id: int) -> list[MessageRow]:
    """A campaign edit changes its messages' content (their ``campaign`` block): each editable message gets a
    new version and loses its approval like any edit; messages past approval (scheduled, sent, cancelled …)
    keep their approved version. Returns the messages changed."""
    rows = session.exec(select(MessageRow).where(MessageRow.campaign_id == campaign.id,
                                                 MessageRow.org_id == campaign.org_id,
                                                 col(MessageRow.status).in_(EDITABLE))
                        .order_by(col(MessageRow.id)).with_for_update()).all()
    changed = []
    for m in rows:
        content_changed(session, m, user_id)
        changed.append(m)
    return changed


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def label_parts(label: str) -> list[Any]:
    """``creatives[0].content.body`` → ``['creatives', 0, 'content', 'body']``."""
    return [int(i) if i else name for name, i in _PART.findall(label)]


def resource_pointer(parts: Sequence[Any], creative_ids: Sequence[int | None]) -> str:
    """A place in a message document as a JSON pointer into the message resource: ``message.`` is dropped
    (``/title``, ``/strategy/0``) and a creative is named by its id (``/creatives/17/content/body``)."""
    parts = list(parts)
    if parts and parts[0] == "message":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "creatives" and isinstance(parts[1], int) and parts[1] < len(creative_ids):
        parts[1] = creative_ids[parts[1]]
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def problem_items(problems: Sequence[Problem], source: str, creative_ids: Sequence[int | None]) -> list[dict[str, str]]:
    """Engine problems of a loaded document as ``{path, code, message}`` items: places in the document as
    JSON pointers into the message resource, places in a stored ruleset as ``name@version:line:column``."""
    out = []
    for p in problems:
        if p.file and p.file != source and p.line is not None:
            path = f"{p.file}:{p.line}" + (f":{p.column}" if p.column is not None else "")
            message = f"{p.path}: {p.message}" if p.path else p.message
        else:
            path, message = resource_pointer(label_parts(p.path), creative_ids), p.message
        out.append({"path": path, "code": p.code, "message": message})
    return out


def submission_problems(herald: Herald, session: Session, message: MessageRow,
                        version: MessageVersion) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Every check of PRODUCT.md §2 on ``version`` of ``message``, at once: ``(errors, warnings)``.

    The engine loads the version (strategy, rules, creatives through their channel plugins, tags against the
    incentive, the incentive's settings, the schedule inside the campaign window, delivery settings); the
    service adds the audience (at least one include group) and the title (unique within the campaign).
    """
    creative_ids = [c.id for c in creative_rows(session, message)]
    source = f"m{message.id}@v{version.number}"
    errors: list[dict[str, str]] = []
    warnings: list[dict[str, str]] = []
    try:
        loaded = load_version(herald, session, message.org_id, version)
    except MessageFileError as exc:
        errors += problem_items(exc.problems, source, creative_ids)
    else:
        for w in loaded.warnings:
            warnings.append({"path": resource_pointer(label_parts(w.path), creative_ids), "code": w.code,
                             "message": w.message})
    if not version.document.get("audience", {}).get("include"):
        errors.append({"path": "/audience/include", "code": "required",
                       "message": "the audience needs at least one include group"})
    twins = session.exec(select(func.count()).select_from(MessageRow).where(
        MessageRow.campaign_id == message.campaign_id, MessageRow.title == message.title,
        MessageRow.id != message.id)).one()
    if twins:
        errors.append({"path": "/title", "code": "duplicate",
                       "message": f"another message of the campaign is titled {message.title!r}"})
    return errors, warnings
