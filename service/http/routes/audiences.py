"""Audience groups: by filter (a condition in the rules' language), by upload (CSV/Parquet of external ids,
phone numbers or e-mail addresses), by merging groups; preview count, members page by page, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery, JSONBody, Parameter
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.http.auth import EDITORS, READERS
from service.http.deps import (
    Caller,
    DbDep,
    Id,
    IdPath,
    check_lock,
    decode_cursor,
    encode_cursor,
    etag,
    expected_lock,
    id_cursor,
    owned,
    page_limit,
)
from service.http.problems import Problem, conflict, error, unprocessable
from service.http.routes.customers import MEDIA_TYPES, SUFFIXES
from service.storage.audience import (
    AudienceProblem,
    add_members,
    audience_frame,
    check_merge,
    compile_filter,
    group_snapshot,
    read_upload,
    users_of,
)
from service.storage.tables import AudienceGroup, AudienceMember, MessageAudience, utcnow

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
GroupIds = Annotated[list[Id], msgspec.Meta(max_length=100)]
MAX_REPORTED = 1000


class GroupIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new group: ``filter`` (a condition, as a rule's ``when:``) or ``include`` (and ``exclude``) group ids."""

    name: Name
    filter: Any | msgspec.UnsetType = msgspec.UNSET
    include: GroupIds | msgspec.UnsetType = msgspec.UNSET
    exclude: GroupIds = msgspec.field(default_factory=list)


class GroupPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to a group: its name; a filter group's condition; a merge group's lists (``version``: the one
    you read, or ``If-Match``)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    filter: Any | msgspec.UnsetType = msgspec.UNSET
    include: GroupIds | msgspec.UnsetType = msgspec.UNSET
    exclude: GroupIds | msgspec.UnsetType = msgspec.UNSET
    version: int | None = None


@dataclass
class UploadForm:
    """A multipart upload group: the file (CSV or Parquet), the group's name, the column holding the identifier
    and what it identifies (default: ``phone`` or ``email`` when the column is named so, else ``external_id``)."""

    file: UploadFile
    name: str
    id_column: str = "id"
    id_type: Literal["external_id", "phone", "email"] | None = None
    keep_valid: bool = False


def group_out(g: AudienceGroup) -> dict[str, Any]:
    """A group on the wire."""
    out: dict[str, Any] = {"id": g.id, "name": g.name, "kind": g.kind, "version": g.lock,
                           "created_at": g.created_at.isoformat(), "updated_at": g.updated_at.isoformat()}
    if g.kind == "filter":
        out["filter"] = g.definition["filter"]
    elif g.kind == "merge":
        out["include"], out["exclude"] = g.definition.get("include", []), g.definition.get("exclude", [])
    else:
        out.update({"id_column": g.definition.get("id_column"), "id_type": g.definition.get("id_type"),
                    "file": g.definition.get("file"), "members": g.members})
    return out


def _refused(exc: AudienceProblem) -> Problem:
    return unprocessable(exc.detail, [error(p, c, m) for p, c, m in exc.items])


def _flush_unique(s: Session, name: str) -> None:
    try:
        s.flush()
    except IntegrityError:
        raise conflict(f"an audience group named {name!r} exists in your org", "duplicate") from None


def _check_definition(s: Session, caller_org: int, herald: Any, filter_: Any, include: list[int] | None,
                      exclude: list[int], editing: int | None) -> dict[str, Any]:
    try:
        if include is None:
            compile_filter(filter_, herald.catalogue)
            return {"filter": filter_}
        check_merge(s, caller_org, include, exclude, editing)
        return {"include": list(include), "exclude": list(exclude)}
    except AudienceProblem as exc:
        raise _refused(exc) from None


@post("/audience-groups", operation_id="createAudienceGroup", tags=["audiences"], guards=[EDITORS], sync_to_thread=True)
def create_group(data: JSONBody[GroupIn], caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Create a group by ``filter`` (checked against the field catalogue; 422 pointing at the bad part) or by
    merging groups (``include``, ``exclude``)."""
    has_filter, has_merge = data.filter is not msgspec.UNSET, data.include is not msgspec.UNSET
    if has_filter == has_merge:
        raise unprocessable("a group is made by `filter` or by `include` (and `exclude`), one of them",
                            [error("/filter" if has_filter else "", "kind", "send `filter` or `include`, not both or neither")])
    if has_filter and data.exclude:
        raise unprocessable("`exclude` is for merge groups", [error("/exclude", "kind", "a filter group excludes nothing")])
    with db.tx() as s:
        include = None if data.include is msgspec.UNSET else data.include
        definition = _check_definition(s, caller.org_id, db.herald, data.filter, include, data.exclude, None)
        g = AudienceGroup(org_id=caller.org_id, name=data.name.strip(), kind="filter" if has_filter else "merge",
                          definition=definition, created_by=caller.user_id)
        s.add(g)
        _flush_unique(s, g.name)
        return Response(group_out(g), status_code=201, headers=etag(g.lock))


@post("/audience-groups/upload", operation_id="uploadAudienceGroup", tags=["audiences"], guards=[EDITORS],
      sync_to_thread=True)
def upload_group(data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)], caller: Caller,
                 db: DbDep) -> Response[dict[str, Any]]:
    """Create a group from a CSV or Parquet file naming customers in ``id_column`` (by ``id_type``: external
    id, phone — E.164 — or e-mail). Any bad row (malformed, unknown customer): 422 listing them
    (``file:line:column``) and nothing stored, unless ``keep_valid``."""
    filename = data.file.filename or "upload"
    fmt = MEDIA_TYPES.get((data.file.content_type or "").split(";")[0].strip().lower()) or next(
        (f for suffix, f in SUFFIXES.items() if filename.lower().endswith(suffix)), None)
    if fmt not in ("csv", "parquet"):
        raise Problem(415, "an audience group file is CSV (.csv) or Parquet (.parquet)", code="unsupported_media_type")
    name = data.name.strip()
    if not name or len(name) > 200:
        raise unprocessable("the name is 1 to 200 characters", [error("name", "invalid", "1 to 200 characters")])
    id_column = data.id_column.strip()
    id_type = data.id_type or (id_column if id_column in ("phone", "email") else "external_id")
    content = data.file.file.read()
    with db.tx() as s:
        try:
            read = read_upload(s, caller.org_id, db.herald.catalogue, content, fmt, id_column, id_type,
                               keep_valid=data.keep_valid, name=filename)
        except AudienceProblem as exc:
            raise _refused(exc) from None
        g = AudienceGroup(org_id=caller.org_id, name=name, kind="upload", members=len(read.customer_ids),
                          definition={"id_column": id_column, "id_type": id_type, "file": filename},
                          created_by=caller.user_id)
        s.add(g)
        _flush_unique(s, name)
        assert g.id is not None
        add_members(s, g.id, read.customer_ids)
        body = group_out(g) | {"rows": read.rows, "rejected_count": len(read.rejected),
                               "rejected": [error(p, c, m) for p, c, m in read.rejected[:MAX_REPORTED]]}
        return Response(body, status_code=201, headers=etag(g.lock))


@get("/audience-groups", operation_id="listAudienceGroups", tags=["audiences"], guards=[READERS], sync_to_thread=True)
def list_groups(caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
                limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """The org's audience groups, oldest first, a page at a time."""
    n = page_limit(db.settings, limit)
    after = id_cursor(cursor)
    with db.tx() as s:
        rows = s.exec(select(AudienceGroup).where(AudienceGroup.org_id == caller.org_id, col(AudienceGroup.id) > after)
                      .order_by(col(AudienceGroup.id)).limit(n + 1)).all()
        return {"items": [group_out(g) for g in rows[:n]],
                "next_cursor": encode_cursor(rows[n - 1].id) if len(rows) > n else None}


@get("/audience-groups/{group_id:int}", operation_id="getAudienceGroup", tags=["audiences"], guards=[READERS],
     sync_to_thread=True)
def get_group(group_id: IdPath, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """One group (its ``ETag`` is the version to send back when changing it)."""
    with db.tx() as s:
        g = owned(s, AudienceGroup, group_id, caller, "audience group")
        return Response(group_out(g), headers=etag(g.lock))


@patch("/audience-groups/{group_id:int}", operation_id="updateAudienceGroup", tags=["audiences"], guards=[EDITORS],
       sync_to_thread=True)
def update_group(group_id: IdPath, data: JSONBody[GroupPatch], request: Request, caller: Caller,
                 db: DbDep) -> Response[dict[str, Any]]:
    """Rename a group, change a filter group's condition or a merge group's lists (a merge making a cycle is
    refused); optimistic locking (``If-Match`` or ``version``; 409 when it changed meanwhile)."""
    expected = expected_lock(request, data.version)
    with db.tx() as s:
        g = owned(s, AudienceGroup, group_id, caller, "audience group", lock=True)
        check_lock(g, expected, "audience group")
        if data.filter is not msgspec.UNSET:
            if g.kind != "filter":
                raise unprocessable("only a filter group has a filter", [error("/filter", "kind", f"this is a {g.kind} group")])
            g.definition = _check_definition(s, caller.org_id, db.herald, data.filter, None, [], g.id)
        if data.include is not msgspec.UNSET or data.exclude is not msgspec.UNSET:
            if g.kind != "merge":
                raise unprocessable("only a merge group includes and excludes groups",
                                    [error("/include" if data.include is not msgspec.UNSET else "/exclude", "kind",
                                           f"this is a {g.kind} group")])
            include = g.definition["include"] if data.include is msgspec.UNSET else data.include
            exclude = g.definition["exclude"] if data.exclude is msgspec.UNSET else data.exclude
            g.definition = _check_definition(s, caller.org_id, db.herald, None, include, exclude, g.id)
        if data.name is not msgspec.UNSET:
            g.name = data.name.strip()
        g.lock += 1
        g.updated_at = utcnow()
        s.add(g)
        _flush_unique(s, g.name)
        return Response(group_out(g), headers=etag(g.lock))


@get("/audience-groups/{group_id:int}/count", operation_id="countAudienceGroup", tags=["audiences"],
     guards=[READERS], sync_to_thread=True)
def count_group(group_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """How many live customers the group holds now (a preview: anonymised customers never count)."""
    with db.tx() as s:
        g = owned(s, AudienceGroup, group_id, caller, "audience group")
        snapshot = _snapshot(s, g)
    return {"group": group_id, "count": audience_frame(db.engine, caller.org_id, db.herald, snapshot).height}


def _snapshot(s: Session, g: AudienceGroup) -> dict[str, Any]:
    try:
        return {"include": [group_snapshot(s, g)], "exclude": []}
    except AudienceProblem as exc:
        raise Problem(409, exc.detail, [error(p, c, m) for p, c, m in exc.items], code="broken_group") from None


@get("/audience-groups/{group_id:int}/members", operation_id="listAudienceGroupMembers", tags=["audiences"],
     guards=[READERS], sync_to_thread=True)
def list_members(group_id: IdPath, caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
                 limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """The group's live customers by external id, a page at a time (``next_cursor`` while more remain)."""
    n = page_limit(db.settings, limit)
    after = decode_cursor(cursor)
    if after is not None and not isinstance(after, str):
        raise unprocessable("the cursor is not one this server gave", [error("cursor", "invalid", "unknown cursor")])
    with db.tx() as s:
        g = owned(s, AudienceGroup, group_id, caller, "audience group")
        snapshot = _snapshot(s, g)
    frame = audience_frame(db.engine, caller.org_id, db.herald, snapshot)
    if after is not None:
        frame = frame.filter(frame.get_column("customer.id") > after)
    page = frame.head(n + 1)
    items = []
    for row in page.head(n).iter_rows(named=True):
        attrs = {k.removeprefix("customer."): v for k, v in row.items() if v is not None and k != "customer.id"}
        items.append({"id": row["customer.id"], "attributes": dict(sorted(attrs.items()))})
    return {"items": items, "next_cursor": encode_cursor(items[-1]["id"]) if page.height > n else None}


@delete("/audience-groups/{group_id:int}", operation_id="deleteAudienceGroup", tags=["audiences"], guards=[EDITORS],
        sync_to_thread=True, status_code=204)
def delete_group(group_id: IdPath, caller: Caller, db: DbDep) -> None:
    """Delete a group no message and no merge group uses (409 otherwise, naming them)."""
    with db.tx() as s:
        g = owned(s, AudienceGroup, group_id, caller, "audience group", lock=True)
        messages = s.exec(select(MessageAudience.message_id).where(MessageAudience.group_id == g.id,
                                                                   MessageAudience.org_id == caller.org_id)).all()
        if messages:
            raise conflict(f"messages {', '.join(map(str, sorted(messages)))} use this group; take it out of their "
                           "audience first", "in_use")
        merges = users_of(s, g)
        if merges:
            raise conflict(f"merge groups {', '.join(map(str, sorted(merges)))} use this group; change them first",
                           "in_use")
        s.execute(AudienceMember.__table__.delete().where(AudienceMember.__table__.c.group_id == g.id))  # type: ignore[attr-defined]
        s.delete(g)


HANDLERS = [create_group, upload_group, list_groups, get_group, update_group, count_group, list_members, delete_group]
