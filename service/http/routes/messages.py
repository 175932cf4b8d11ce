"""Messages: step 1 (title, type, strategy), the message's rules, audience (step 2), schedule (step 5) and
delivery settings, and its immutable versions.

Every change of any step goes through :func:`changed`: the message gets a new version (a snapshot under one
hash) and, when it was submitted, approved or rejected, becomes a draft again (its approval void, audited).
``PATCH`` needs the version read (``If-Match`` or ``version``: 409 when it changed meanwhile); the ``PUT`` of
a whole step takes ``If-Match`` optionally (conditional when sent).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.params import JSONBody
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.registry import Registry, unknown_kind
from engine.validation import strategies
from service.http.auth import EDITORS, READERS
from service.http.deps import Caller, DbDep, Id, IdPath, check_lock, etag, expected_lock, owned
from service.http.problems import conflict, error, not_found, unprocessable
from service.storage import audit
from service.storage.messages import (
    DRAFT,
    EDITABLE,
    NotEditable,
    audience_groups,
    content_changed,
    creative_rows,
    schedule_block,
    snapshot,
)
from service.storage.rulesets import get_version as get_ruleset_version
from service.storage.rulesets import latest, split_ref
from service.storage.tables import (
    Approval,
    AudienceGroup,
    Campaign,
    Creative,
    DeliverySettingsRow,
    MessageAudience,
    MessageRow,
    MessageVersion,
    Run,
    RunDecision,
    Schedule,
)

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Names = Annotated[list[Name], msgspec.Meta(max_length=20)]
MessageType = Literal["broadcast", "bounceback", "timeline"]
GroupIds = Annotated[list[Id], msgspec.Meta(max_length=200)]


class MessageIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new message of a campaign: step 1."""

    title: Title
    type: MessageType = "broadcast"
    strategy: Names = msgspec.field(default_factory=list)
    channels: Names = msgspec.field(default_factory=list)
    optimizers: dict[Name, dict[str, Any]] = msgspec.field(default_factory=dict)


class MessagePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to step 1: the fields sent are changed (``version``: the one you read, or ``If-Match``)."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    type: MessageType | msgspec.UnsetType = msgspec.UNSET
    strategy: Names | msgspec.UnsetType = msgspec.UNSET
    channels: Names | msgspec.UnsetType = msgspec.UNSET
    optimizers: dict[Name, dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    version: int | None = None


class AudienceIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Step 2: the groups whose union is the audience, and those whose union is taken out (exclude wins)."""

    include: GroupIds = msgspec.field(default_factory=list)
    exclude: GroupIds = msgspec.field(default_factory=list)


class ScheduleIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Step 5: when (every time with its zone offset); checked against the campaign window at submit."""

    kind: Literal["immediate", "at", "recurring"] = "immediate"
    at: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    rrule: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    local_time: Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] | None = None
    quiet_hours: Annotated[list[Annotated[str, msgspec.Meta(max_length=5)]],
                           msgspec.Meta(min_length=2, max_length=2)] | None = None


class PocIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A point of contact: who gets the test send before the real one."""

    channel: Name
    handle: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]


class DeliveryIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Delivery settings: senders per channel, tiny URL, points of contact, DND and control sends."""

    senders: Annotated[dict[Name, dict[str, Any]], msgspec.Meta(max_length=20)] = msgspec.field(default_factory=dict)
    tiny_url: bool = False
    send_to_dnd: bool = False
    send_to_control: bool = False
    poc: Annotated[list[PocIn], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)


# --- helpers shared by the step routes -------------------------------------------------------------------


def editable(s: Session, message_id: int, caller: Any, request: Request[Any, Any, Any] | None = None, *,
             required_lock: int | None = None) -> MessageRow:
    """The caller's message, row-locked, for a change: 404 for another org's, 409 when ``If-Match`` (or
    ``required_lock``) is stale or when its status allows no change (naming it)."""
    m = owned(s, MessageRow, message_id, caller, "message", lock=True)
    if required_lock is not None:
        check_lock(m, required_lock, "message")
    elif request is not None and request.headers.get("if-match"):
        check_lock(m, expected_lock(request, None), "message")
    if m.status not in EDITABLE:
        raise conflict(f"the message is {m.status}; only a message in {', '.join(EDITABLE)} can change",
                       "illegal_transition")
    return m


def changed(s: Session, m: MessageRow, caller: Any) -> MessageVersion:
    """Record an edit of ``m``: new lock and version; a submitted or approved message becomes a draft."""
    try:
        return content_changed(s, m, caller.user_id)
    except NotEditable as exc:
        raise conflict(str(exc), "illegal_transition") from None


def version_ref(s: Session, version_id: int | None) -> dict[str, Any] | None:
    """``{number, hash}`` of a version id."""
    if version_id is None:
        return None
    v = s.get(MessageVersion, version_id)
    return {"number": v.number, "hash": v.hash} if v is not None else None


def creative_out(c: Creative) -> dict[str, Any]:
    """A creative on the wire."""
    return {"id": c.id, "message_id": c.message_id, "channel": c.channel, "variant": c.variant, "content": c.content,
            "version": c.lock}


def delivery_out(row: DeliverySettingsRow | None) -> dict[str, Any]:
    """Delivery settings on the wire."""
    if row is None:
        return {"senders": {}, "tiny_url": False, "send_to_dnd": False, "send_to_control": False, "poc": []}
    return {"senders": row.senders, "tiny_url": row.tiny_url, "send_to_dnd": row.send_to_dnd,
            "send_to_control": row.send_to_control, "poc": row.poc}


def message_out(s: Session, m: MessageRow) -> dict[str, Any]:
    """A message on the wire: every step as it is now, its status and versions."""
    groups = audience_groups(s, m)
    return {
        "id": m.id, "campaign_id": m.campaign_id, "title": m.title, "type": m.type, "strategy": m.strategy,
        "channels": m.channels, "optimizers": m.optimizers, "rules": m.rules, "status": m.status,
        "author_id": m.author_id, "version": m.lock,
        "audience": {mode: [g.id for g in gs] for mode, gs in groups.items()},
        "creatives": [creative_out(c) for c in creative_rows(s, m)],
        "incentive_id": m.incentive_id,
        "schedule": schedule_block(s.get(Schedule, m.id)),
        "delivery": delivery_out(s.get(DeliverySettingsRow, m.id)),
        "current_version": version_ref(s, m.current_version_id),
        "submitted_version": version_ref(s, m.submitted_version_id),
        "approved_version": version_ref(s, m.approved_version_id),
    }


def respond(s: Session, m: MessageRow, status: int = 200) -> Response[dict[str, Any]]:
    """The message, with its ETag."""
    return Response(message_out(s, m), status_code=status, headers=etag(m.lock))


def _step1_problems(registry: Registry, strategy: list[str] | msgspec.UnsetType,
                    channels: list[str] | msgspec.UnsetType) -> list[dict[str, str]]:
    out = []
    if isinstance(strategy, list):
        allowed = strategies(registry)
        out += [error(f"/strategy/{i}", "unknown_strategy", f"unknown strategy {name!r}; one of {', '.join(allowed)}")
                for i, name in enumerate(strategy) if name not in allowed]
        out += [error(f"/strategy/{i}", "duplicate", f"{name!r} repeats") for i, name in enumerate(strategy)
                if name in strategy[:i]]
    if isinstance(channels, list):
        known = sorted(registry.channels)
        out += [error(f"/channels/{i}", "unknown_channel", f"unknown channel {name!r}; registered: {', '.join(known)}")
                for i, name in enumerate(channels) if name not in registry.channels]
        out += [error(f"/channels/{i}", "duplicate", f"{name!r} repeats") for i, name in enumerate(channels)
                if name in channels[:i]]
    return out


def _flush_title(s: Session, title: str) -> None:
    try:
        s.flush()
    except IntegrityError:
        raise conflict(f"the campaign already has a message titled {title!r}", "duplicate") from None


# --- step 1 -------------------------------------------------------------------------------------------------


@post("/campaigns/{campaign_id:int}/messages", operation_id="createMessage", tags=["messages"], guards=[EDITORS],
      sync_to_thread=True)
def create_message(campaign_id: IdPath, data: JSONBody[MessageIn], caller: Caller,
                   db: DbDep) -> Response[dict[str, Any]]:
    """Create a draft message in a campaign (its title unique there); the caller is its author."""
    problems = _step1_problems(db.herald.registry, data.strategy, data.channels)
    if problems:
        raise unprocessable("the message has problems", problems)
    with db.tx() as s:
        campaign = owned(s, Campaign, campaign_id, caller, "campaign")
        assert campaign.id is not None
        m = MessageRow(org_id=caller.org_id, campaign_id=campaign.id, title=data.title.strip(), type=data.type,
                       strategy=list(data.strategy), channels=list(data.channels), optimizers=dict(data.optimizers),
                       author_id=caller.user_id)
        s.add(m)
        _flush_title(s, m.title)
        version = snapshot(s, m, caller.user_id)
        assert m.id is not None
        audit.record(s, caller.org_id, "message", m.id, "created", None, DRAFT, caller.user_id, None, version.hash)
        return respond(s, m, 201)


@get("/campaigns/{campaign_id:int}/messages", operation_id="listCampaignMessages", tags=["messages"],
     guards=[READERS], sync_to_thread=True)
def list_messages(campaign_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """The campaign's messages (id, title, status, version), oldest first."""
    with db.tx() as s:
        owned(s, Campaign, campaign_id, caller, "campaign")
        rows = s.exec(select(MessageRow).where(MessageRow.campaign_id == campaign_id,
                                               MessageRow.org_id == caller.org_id).order_by(col(MessageRow.id))).all()
        return {"items": [{"id": m.id, "title": m.title, "type": m.type, "status": m.status, "version": m.lock}
                          for m in rows]}


@get("/messages/{message_id:int}", operation_id="getMessage", tags=["messages"], guards=[READERS], sync_to_thread=True)
def get_message(message_id: IdPath, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """A message: every step, status and versions (its ``ETag`` is the version to send back when changing it)."""
    with db.tx() as s:
        return respond(s, owned(s, MessageRow, message_id, caller, "message"))


@patch("/messages/{message_id:int}", operation_id="updateMessage", tags=["messages"], guards=[EDITORS],
       sync_to_thread=True)
def update_message(message_id: IdPath, data: JSONBody[MessagePatch], request: Request, caller: Caller,
                   db: DbDep) -> Response[dict[str, Any]]:
    """Change step 1 (optimistic locking: ``If-Match`` or ``version``; 409 when it changed meanwhile)."""
    expected = expected_lock(request, data.version)
    problems = _step1_problems(db.herald.registry, data.strategy, data.channels)
    with db.tx() as s:
        m = editable(s, message_id, caller, required_lock=expected)
        if problems:
            raise unprocessable("the message has problems", problems)
        for name in ("title", "type", "strategy", "channels", "optimizers"):
            value = getattr(data, name)
            if value is not msgspec.UNSET:
                setattr(m, name, value.strip() if name == "title" else value)
        s.add(m)
        _flush_title(s, m.title)
        changed(s, m, caller)
        return respond(s, m)


@delete("/messages/{message_id:int}", operation_id="deleteMessage", tags=["messages"], guards=[EDITORS],
        sync_to_thread=True, status_code=204)
def delete_message(message_id: IdPath, caller: Caller, db: DbDep) -> None:
    """Delete a draft that was never submitted (its dry runs go with it); a message with approval history is
    kept (409: cancel it instead). The audit log keeps the deletion."""
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message", lock=True)
        decided = s.exec(select(Approval.id).where(Approval.message_id == m.id)).first()
        if m.status != DRAFT or decided is not None:
            raise conflict(f"the message is {m.status} and has approval history; only a never-submitted draft can be "
                           "deleted (cancel it instead)", "illegal_transition")
        runs = select(Run.id).where(Run.message_id == m.id)
        s.execute(sql_delete(RunDecision).where(col(RunDecision.run_id).in_(runs)))
        for model in (Run, Creative, MessageAudience):
            s.execute(sql_delete(model).where(col(model.message_id) == m.id))  # type: ignore[attr-defined]
        for model in (Schedule, DeliverySettingsRow):
            row = s.get(model, m.id)
            if row is not None:
                s.delete(row)
        m.current_version_id = None
        s.add(m)
        s.flush()
        s.execute(sql_delete(MessageVersion).where(col(MessageVersion.message_id) == m.id))
        assert m.id is not None
        audit.record(s, caller.org_id, "message", m.id, "deleted", m.status, None, caller.user_id)
        s.delete(m)


# --- rules --------------------------------------------------------------------------------------------------


@put("/messages/{message_id:int}/rules", operation_id="setMessageRules", tags=["messages"], guards=[EDITORS],
     sync_to_thread=True)
def set_rules(message_id: IdPath, data: JSONBody[Annotated[dict[Name, Annotated[str, msgspec.Meta(
        min_length=1, max_length=300)]], msgspec.Meta(max_length=20)]], request: Request, caller: Caller,
        db: DbDep) -> Response[dict[str, Any]]:
    """The message's rules: ``{kind: ruleset}``, each a stored ruleset's name (its latest version is pinned when a
    version is taken) or ``name@version``; the ruleset must be of that kind."""
    registry = db.herald.registry
    with db.tx() as s:
        m = editable(s, message_id, caller, request)
        problems = []
        for kind, ref in data.items():
            if kind not in registry.kinds:
                problems.append(error(f"/{kind}", "unknown_kind", unknown_kind(kind, registry.kinds)))
                continue
            name, version = split_ref(ref)
            row = get_ruleset_version(s, caller.org_id, name, version) if version else latest(s, caller.org_id, name)
            if row is None:
                problems.append(error(f"/{kind}", "unknown_ruleset", f"no stored ruleset {ref!r} in your org"))
            elif row.kind != kind:
                problems.append(error(f"/{kind}", "kind", f"{ref} is a {row.kind} ruleset, not {kind}"))
        if problems:
            raise unprocessable("the rules have problems", problems)
        m.rules = dict(data)
        s.add(m)
        changed(s, m, caller)
        return respond(s, m)


# --- step 2: audience ---------------------------------------------------------------------------------------


@put("/messages/{message_id:int}/audience", operation_id="setMessageAudience", tags=["messages"], guards=[EDITORS],
     sync_to_thread=True)
def set_audience(message_id: IdPath, data: JSONBody[AudienceIn], request: Request, caller: Caller,
                 db: DbDep) -> Response[dict[str, Any]]:
    """The message's audience: include groups (their union) minus exclude groups; groups of your org only."""
    with db.tx() as s:
        m = editable(s, message_id, caller, request)
        wanted = set(data.include) | set(data.exclude)
        found = set(s.exec(select(AudienceGroup.id).where(AudienceGroup.org_id == caller.org_id,
                                                          col(AudienceGroup.id).in_(wanted))).all()) if wanted else set()
        problems = []
        for mode in ("include", "exclude"):
            ids = getattr(data, mode)
            for i, gid in enumerate(ids):
                if gid not in found:
                    problems.append(error(f"/{mode}/{i}", "not_found", f"no audience group {gid} in your org"))
                elif gid in ids[:i]:
                    problems.append(error(f"/{mode}/{i}", "duplicate", f"group {gid} repeats"))
        for i, gid in enumerate(data.exclude):
            if gid in data.include:
                problems.append(error(f"/exclude/{i}", "both", f"group {gid} is both included and excluded"))
        if problems:
            raise unprocessable("the audience has problems", problems)
        s.execute(sql_delete(MessageAudience).where(col(MessageAudience.message_id) == m.id))
        assert m.id is not None
        for mode in ("include", "exclude"):
            for gid in getattr(data, mode):
                s.add(MessageAudience(message_id=m.id, group_id=gid, org_id=caller.org_id, mode=mode))
        s.flush()
        changed(s, m, caller)
        return respond(s, m)


# --- step 5 and delivery ------------------------------------------------------------------------------------


@put("/messages/{message_id:int}/schedule", operation_id="setMessageSchedule", tags=["messages"], guards=[EDITORS],
     sync_to_thread=True)
def set_schedule(message_id: IdPath, data: JSONBody[ScheduleIn], request: Request, caller: Caller,
                 db: DbDep) -> Response[dict[str, Any]]:
    """The message's schedule; every time needs its zone offset (the campaign window is checked at submit)."""
    import datetime as dt

    problems = []
    if data.at is not None:
        try:
            at = dt.datetime.fromisoformat(data.at)
        except ValueError:
            problems.append(error("/at", "invalid", "not an ISO date-time, e.g. 2026-07-04T19:00:00+05:30"))
        else:
            if at.tzinfo is None:
                problems.append(error("/at", "timezone_required", "the date-time needs a time zone offset, e.g. +05:30"))
    if data.kind == "at" and data.at is None:
        problems.append(error("/at", "required", "an 'at' schedule needs a date-time"))
    if data.kind == "recurring" and not data.rrule:
        problems.append(error("/rrule", "required", "a recurring schedule needs an RRULE, e.g. FREQ=WEEKLY;BYDAY=MO"))
    if problems:
        raise unprocessable("the schedule has problems", problems)
    with db.tx() as s:
        m = editable(s, message_id, caller, request)
        assert m.id is not None
        row = s.get(Schedule, m.id) or Schedule(message_id=m.id, org_id=caller.org_id)
        row.kind, row.at, row.rrule, row.local_time = data.kind, data.at, data.rrule, data.local_time
        row.quiet_hours = list(data.quiet_hours) if data.quiet_hours else None
        s.add(row)
        s.flush()
        changed(s, m, caller)
        return respond(s, m)


@put("/messages/{message_id:int}/delivery", operation_id="setMessageDelivery", tags=["messages"], guards=[EDITORS],
     sync_to_thread=True)
def set_delivery(message_id: IdPath, data: JSONBody[DeliveryIn], request: Request, caller: Caller,
                 db: DbDep) -> Response[dict[str, Any]]:
    """The message's delivery settings (sender settings are checked by their channels at submit)."""
    registry = db.herald.registry
    known = ", ".join(sorted(registry.channels))
    problems = [error(f"/senders/{ch}", "unknown_channel", f"unknown channel {ch!r}; registered: {known}")
                for ch in data.senders if ch not in registry.channels]
    problems += [error(f"/poc/{i}/channel", "unknown_channel", f"unknown channel {p.channel!r}; registered: {known}")
                 for i, p in enumerate(data.poc) if p.channel not in registry.channels]
    if problems:
        raise unprocessable("the delivery settings have problems", problems)
    with db.tx() as s:
        m = editable(s, message_id, caller, request)
        assert m.id is not None
        row = s.get(DeliverySettingsRow, m.id) or DeliverySettingsRow(message_id=m.id, org_id=caller.org_id)
        row.senders = dict(data.senders)
        row.tiny_url, row.send_to_dnd, row.send_to_control = data.tiny_url, data.send_to_dnd, data.send_to_control
        row.poc = [{"channel": p.channel, "handle": p.handle.strip()} for p in data.poc]
        s.add(row)
        s.flush()
        changed(s, m, caller)
        return respond(s, m)


# --- versions -----------------------------------------------------------------------------------------------


def _version_out(v: MessageVersion, document: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"number": v.number, "hash": v.hash, "created_by": v.created_by,
                           "created_at": v.created_at.isoformat()}
    if document:
        out["document"] = v.document
    return out


@get("/messages/{message_id:int}/versions", operation_id="listMessageVersions", tags=["messages"], guards=[READERS],
     sync_to_thread=True)
def list_versions(message_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """The message's versions (immutable snapshots), newest first."""
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message")
        rows = s.exec(select(MessageVersion).where(MessageVersion.message_id == m.id,
                                                   MessageVersion.org_id == caller.org_id)
                      .order_by(col(MessageVersion.number).desc())).all()
        return {"items": [_version_out(v) for v in rows]}


@get("/messages/{message_id:int}/versions/{number:int}", operation_id="getMessageVersion", tags=["messages"],
     guards=[READERS], sync_to_thread=True)
def get_version(message_id: IdPath, number: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """One version of the message: its hash and its whole document (what an approval covers)."""
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message")
        v = s.exec(select(MessageVersion).where(MessageVersion.message_id == m.id, MessageVersion.number == number,
                                                MessageVersion.org_id == caller.org_id)).first()
        if v is None:
            raise not_found("version of this message")
        return _version_out(v, document=True)


HANDLERS = [create_message, list_messages, get_message, update_message, delete_message, set_rules, set_audience,
            set_schedule, set_delivery, list_versions, get_version]
