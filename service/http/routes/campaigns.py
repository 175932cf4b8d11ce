"""Campaigns: a name, a window (start and end dates) and an optional objective; they hold messages."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromQuery, JSONBody, Parameter
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.http.auth import EDITORS, READERS
from service.http.deps import (
    Caller,
    DbDep,
    IdPath,
    check_lock,
    encode_cursor,
    etag,
    expected_lock,
    id_cursor,
    owned,
    page_limit,
)
from service.http.problems import conflict, error, unprocessable
from service.storage.messages import campaign_changed
from service.storage.tables import Campaign, MessageRow, utcnow

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Objective = Annotated[str, msgspec.Meta(max_length=100)]


class CampaignIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new campaign."""

    name: Name
    starts: dt.date | None = None
    ends: dt.date | None = None
    objective: Objective | None = None


class CampaignPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to a campaign: the fields sent are changed (``version``: the one you read, or ``If-Match``)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    starts: dt.date | None | msgspec.UnsetType = msgspec.UNSET
    ends: dt.date | None | msgspec.UnsetType = msgspec.UNSET
    objective: Objective | None | msgspec.UnsetType = msgspec.UNSET
    version: int | None = None


def campaign_out(c: Campaign) -> dict[str, Any]:
    """A campaign on the wire."""
    return {"id": c.id, "name": c.name, "starts": c.starts.isoformat() if c.starts else None,
            "ends": c.ends.isoformat() if c.ends else None, "objective": c.objective, "version": c.lock}


def _check_window(c: Campaign) -> None:
    if c.starts and c.ends and c.ends < c.starts:
        raise unprocessable("the campaign ends before it starts",
                            [error("/ends", "window", f"the campaign ends ({c.ends}) before it starts ({c.starts})")])


def _flush_unique(s: Session, name: str) -> None:
    try:
        s.flush()
    except IntegrityError:
        raise conflict(f"a campaign named {name!r} exists in your org", "duplicate") from None


@post("/campaigns", operation_id="createCampaign", tags=["campaigns"], guards=[EDITORS], sync_to_thread=True)
def create_campaign(data: JSONBody[CampaignIn], caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Create a campaign."""
    with db.tx() as s:
        c = Campaign(org_id=caller.org_id, name=data.name.strip(), starts=data.starts, ends=data.ends,
                     objective=data.objective)
        _check_window(c)
        s.add(c)
        _flush_unique(s, c.name)
        return Response(campaign_out(c), status_code=201, headers=etag(c.lock))


@get("/campaigns", operation_id="listCampaigns", tags=["campaigns"], guards=[READERS], sync_to_thread=True)
def list_campaigns(caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
                   limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """The org's campaigns, oldest first, a page at a time (``next_cursor`` while more remain)."""
    n = page_limit(db.settings, limit)
    after = id_cursor(cursor)
    with db.tx() as s:
        rows = s.exec(select(Campaign).where(Campaign.org_id == caller.org_id, col(Campaign.id) > after)
                      .order_by(col(Campaign.id)).limit(n + 1)).all()
        items = [campaign_out(c) for c in rows[:n]]
        return {"items": items, "next_cursor": encode_cursor(rows[n - 1].id) if len(rows) > n else None}


@get("/campaigns/{campaign_id:int}", operation_id="getCampaign", tags=["campaigns"], guards=[READERS], sync_to_thread=True)
def get_campaign(campaign_id: IdPath, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """One campaign (its ``ETag`` is the version to send back when changing it)."""
    with db.tx() as s:
        c = owned(s, Campaign, campaign_id, caller, "campaign")
        return Response(campaign_out(c), headers=etag(c.lock))


@patch("/campaigns/{campaign_id:int}", operation_id="updateCampaign", tags=["campaigns"], guards=[EDITORS],
       sync_to_thread=True)
def update_campaign(campaign_id: IdPath, data: JSONBody[CampaignPatch], request: Request, caller: Caller,
                    db: DbDep) -> Response[dict[str, Any]]:
    """Change a campaign (optimistic locking: ``If-Match`` or ``version``; 409 when it changed meanwhile)."""
    expected = expected_lock(request, data.version)
    with db.tx() as s:
        c = owned(s, Campaign, campaign_id, caller, "campaign", lock=True)
        check_lock(c, expected, "campaign")
        for name in ("name", "starts", "ends", "objective"):
            value = getattr(data, name)
            if value is not msgspec.UNSET:
                setattr(c, name, value.strip() if name == "name" else value)
        _check_window(c)
        c.lock += 1
        c.updated_at = utcnow()
        s.add(c)
        _flush_unique(s, c.name)
        campaign_changed(s, c, caller.user_id)  # its messages' content changed: new versions, approvals void
        return Response(campaign_out(c), headers=etag(c.lock))


@delete("/campaigns/{campaign_id:int}", operation_id="deleteCampaign", tags=["campaigns"], guards=[EDITORS],
        sync_to_thread=True, status_code=204)
def delete_campaign(campaign_id: IdPath, caller: Caller, db: DbDep) -> None:
    """Delete a campaign that holds no message (409 otherwise)."""
    with db.tx() as s:
        c = owned(s, Campaign, campaign_id, caller, "campaign", lock=True)
        if s.exec(select(MessageRow.id).where(MessageRow.campaign_id == c.id)).first() is not None:
            raise conflict("the campaign holds messages; delete or move them first", "not_empty")
        s.delete(c)


HANDLERS = [create_campaign, list_campaigns, get_campaign, update_campaign, delete_campaign]
