"""Incentives (step 4): coupon series and points strategies of the org, their settings checked by the incentive
type's plugin (through ``db.herald.registry``) when saved; uploaded coupon codes; the message's incentive.

What depends on a message (its campaign window, its schedule, whether a creative shows the tags) is checked
when the message is submitted. Changing an incentive or its codes changes every editable message that uses it
(a new version; an approval is voided)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Request, Response, get, patch, post, put
from litestar.params import JSONBody
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from engine.errors import UnknownReference, ValidationFailed
from engine.model import Campaign as EngineCampaign
from engine.model import IncentiveSpec, Message
from engine.runtime import Herald
from engine.sourcefile import check_depth
from service.http.auth import EDITORS, READERS
from service.http.deps import Caller, DbDep, Id, IdPath, check_lock, etag, expected_lock, owned
from service.http.problems import Problem, conflict, error, unprocessable
from service.http.routes.messages import changed, editable, respond
from service.storage.messages import EDITABLE, label_parts
from service.storage.tables import CouponCode, Incentive, MessageRow

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Kind = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
#: the most codes one upload may add, and the longest code
MAX_CODES, MAX_CODE = 200_000, 100
#: findings that depend on a message (its campaign or schedule), checked at submit instead
MESSAGE_BOUND = ("no_campaign_end", "before_campaign", "before_send")
CODE_TYPES = ("text/csv", "text/plain", "application/json")


class IncentiveIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new incentive: a registered kind (``coupon``, ``points``) and its settings."""

    name: Name
    kind: Kind
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


class IncentivePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to an incentive (``version``: the one you read, or ``If-Match``)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    settings: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    version: int | None = None


class MessageIncentiveIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The message's incentive: an incentive id of your org, or null for none."""

    incentive_id: Id | None


def incentive_out(s: Session, inc: Incentive) -> dict[str, Any]:
    """An incentive on the wire (with how many codes were uploaded)."""
    codes = s.exec(select(func.count()).select_from(CouponCode).where(CouponCode.incentive_id == inc.id)).one()
    return {"id": inc.id, "name": inc.name, "kind": inc.kind, "settings": inc.settings, "codes": codes,
            "version": inc.lock}


def _pointer(parts: list[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def settings_issues(herald: Herald, kind: str, settings: dict[str, Any],
                    stored_codes: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(errors, warnings)`` of an incentive's settings, from its type's plugin (``/kind`` when unregistered)."""
    try:
        check_depth(settings, "settings")
        itype = herald.registry.incentive(kind)
    except ValidationFailed as exc:
        return [error("/settings", p.code, p.message) for p in exc.problems], []
    except UnknownReference as exc:
        return [error("/kind", "unknown_incentive", str(exc))], []
    probe = Message("incentive-check", "incentive check", EngineCampaign("incentive-check", ends=dt.date.max),
                    incentive=IncentiveSpec(kind, settings))
    found = list(itype.validate(settings, probe))
    check_fields = getattr(itype, "check_fields", None)
    if check_fields is not None:
        found += check_fields(settings, herald.catalogue)
    errors, warnings = [], []
    for issue in found:
        if issue.code in MESSAGE_BOUND:
            continue
        if issue.path == "codes" and issue.code == "required" and "codes" not in settings:
            if stored_codes:
                continue  # uploaded codes fill the list
            warnings.append(error("/settings/codes", "no_codes_yet", "upload the codes: POST /incentives/{id}/codes"))
            continue
        item = error(_pointer(["settings", *label_parts(issue.path)]), issue.code, issue.message)
        (errors if issue.is_error else warnings).append(item)
    return errors, warnings


def _flush_name(s: Session, name: str) -> None:
    try:
        s.flush()
    except IntegrityError:
        raise conflict(f"an incentive named {name!r} exists in your org", "duplicate") from None


def incentive_changed(s: Session, inc: Incentive, caller: Any) -> int:
    """Every editable message using ``inc`` changes with it (new version, approval void); how many did."""
    rows = s.exec(select(MessageRow).where(MessageRow.incentive_id == inc.id, MessageRow.org_id == inc.org_id,
                                           col(MessageRow.status).in_(EDITABLE))
                  .order_by(col(MessageRow.id)).with_for_update()).all()
    for m in rows:
        changed(s, m, caller)
    return len(rows)


@post("/incentives", operation_id="createIncentive", tags=["incentives"], guards=[EDITORS], sync_to_thread=True)
def create_incentive(data: JSONBody[IncentiveIn], caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Create a coupon series or points strategy; its settings are checked by the incentive type's plugin."""
    errors, warnings = settings_issues(db.herald, data.kind, data.settings, 0)
    if errors:
        raise unprocessable(f"the {data.kind} settings have problems", errors)
    with db.tx() as s:
        inc = Incentive(org_id=caller.org_id, name=data.name.strip(), kind=data.kind, settings=data.settings)
        s.add(inc)
        _flush_name(s, inc.name)
        return Response({**incentive_out(s, inc), "warnings": warnings}, status_code=201, headers=etag(inc.lock))


@get("/incentives", operation_id="listIncentives", tags=["incentives"], guards=[READERS], sync_to_thread=True)
def list_incentives(caller: Caller, db: DbDep) -> dict[str, Any]:
    """The org's incentives, oldest first."""
    with db.tx() as s:
        rows = s.exec(select(Incentive).where(Incentive.org_id == caller.org_id).order_by(col(Incentive.id))).all()
        return {"items": [incentive_out(s, i) for i in rows]}


@get("/incentives/{incentive_id:int}", operation_id="getIncentive", tags=["incentives"], guards=[READERS],
     sync_to_thread=True)
def get_incentive(incentive_id: IdPath, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """One incentive."""
    with db.tx() as s:
        inc = owned(s, Incentive, incentive_id, caller, "incentive")
        return Response(incentive_out(s, inc), headers=etag(inc.lock))


@patch("/incentives/{incentive_id:int}", operation_id="updateIncentive", tags=["incentives"], guards=[EDITORS],
       sync_to_thread=True)
def update_incentive(incentive_id: IdPath, data: JSONBody[IncentivePatch], request: Request, caller: Caller,
                     db: DbDep) -> Response[dict[str, Any]]:
    """Change an incentive (optimistic locking); the messages using it change with it."""
    expected = expected_lock(request, data.version)
    with db.tx() as s:
        inc = owned(s, Incentive, incentive_id, caller, "incentive", lock=True)
        check_lock(inc, expected, "incentive")
        warnings: list[dict[str, str]] = []
        if data.settings is not msgspec.UNSET:
            stored = s.exec(select(func.count()).select_from(CouponCode).where(CouponCode.incentive_id == inc.id)).one()
            errors, warnings = settings_issues(db.herald, inc.kind, data.settings, stored)
            if errors:
                raise unprocessable(f"the {inc.kind} settings have problems", errors)
            inc.settings = data.settings
        if data.name is not msgspec.UNSET:
            inc.name = data.name.strip()
        inc.lock += 1
        s.add(inc)
        _flush_name(s, inc.name)
        incentive_changed(s, inc, caller)
        return Response({**incentive_out(s, inc), "warnings": warnings}, headers=etag(inc.lock))


def _read_codes(body: bytes, media: str) -> list[tuple[str, Any]]:
    """``(place, value)`` of each uploaded code: ``codes.csv:LINE`` for CSV or text (one code a line, an optional
    ``code`` header), ``/INDEX`` for a JSON list."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise unprocessable("the codes are not UTF-8 text", [error("codes", "encoding", str(exc))]) from None
    if media == "application/json":
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise unprocessable("the codes are not valid JSON", [error("", "syntax", str(exc))]) from None
        if not isinstance(values, list):
            raise unprocessable("send a JSON list of codes", [error("", "type", "expected a list of strings")])
        return [(f"/{i}", v) for i, v in enumerate(values)]
    out = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if n == 1 and row[0].strip().lower() == "code":
            continue
        if len(row) > 1:
            out.append((f"codes.csv:{n}", None))
            continue
        out.append((f"codes.csv:{n}", row[0].strip()))
    return out


@post("/incentives/{incentive_id:int}/codes", operation_id="uploadCouponCodes", tags=["incentives"],
      guards=[EDITORS])
async def upload_codes(incentive_id: IdPath, request: Request, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Upload coupon codes to an uploaded-list series (``source: list``): ``text/csv`` or ``text/plain`` (one code
    a line) or a JSON list. All or nothing: a bad or duplicate code (in the file or already stored) is refused
    with its line, and nothing is added."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in CODE_TYPES:
        raise Problem(415, f"send the codes as {', '.join(CODE_TYPES)}", code="unsupported_media_type")
    body = await request.body()
    return await anyio.to_thread.run_sync(_store_codes, incentive_id, body, media, caller, db)


def _store_codes(incentive_id: int, body: bytes, media: str, caller: Any, db: Any) -> Response[dict[str, Any]]:
    entries = _read_codes(body, media)
    if len(entries) > MAX_CODES:
        raise unprocessable("too many codes", [error("codes", "too_many", f"at most {MAX_CODES:,} codes an upload")])
    if not entries:
        raise unprocessable("no codes", [error("codes", "required", "the upload holds no code")])
    with db.tx() as s:
        inc = owned(s, Incentive, incentive_id, caller, "incentive", lock=True)
        if inc.settings.get("source") != "list":
            raise conflict("codes are uploaded to a series with source: list; this one is "
                           f"{inc.settings.get('source', 'generated')}", "not_a_list_series")
        stored = set(s.exec(select(CouponCode.code).where(CouponCode.incentive_id == inc.id)).all())
        problems, seen = [], {}
        for place, code in entries:
            if not isinstance(code, str) or not code or len(code) > MAX_CODE or any(c.isspace() for c in code):
                problems.append(error(place, "invalid", f"a code is 1 to {MAX_CODE} characters without spaces"))
            elif code in seen:
                problems.append(error(place, "duplicate", f"code {code!r} repeats {seen[code]}"))
            elif code in stored:
                problems.append(error(place, "duplicate", f"code {code!r} is already in the series"))
            else:
                seen[code] = place
            if len(problems) >= 1000:
                break
        if problems:
            raise unprocessable(f"{len(problems)} code(s) refused; nothing was added", problems)
        assert inc.id is not None
        s.add_all([CouponCode(incentive_id=inc.id, code=code) for code in seen])
        inc.lock += 1
        s.add(inc)
        s.flush()
        incentive_changed(s, inc, caller)
        return Response({"added": len(seen), "total": len(stored) + len(seen), "version": inc.lock}, status_code=201,
                        headers=etag(inc.lock))


@put("/messages/{message_id:int}/incentive", operation_id="setMessageIncentive", tags=["incentives"],
     guards=[EDITORS], sync_to_thread=True)
def set_message_incentive(message_id: IdPath, data: JSONBody[MessageIncentiveIn], request: Request,
                          caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """The message's incentive (an incentive of your org), or none."""
    with db.tx() as s:
        m = editable(s, message_id, caller, request)
        if data.incentive_id is not None:
            found = s.exec(select(Incentive.id).where(Incentive.id == data.incentive_id,
                                                      Incentive.org_id == caller.org_id)).first()
            if found is None:
                raise unprocessable("no such incentive", [error("/incentive_id", "not_found",
                                                                f"no incentive {data.incentive_id} in your org")])
        m.incentive_id = data.incentive_id
        s.add(m)
        s.flush()
        changed(s, m, caller)
        return respond(s, m)


HANDLERS = [create_incentive, list_incentives, get_incentive, update_incentive, upload_codes, set_message_incentive]
