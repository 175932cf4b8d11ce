"""Creatives (step 3): one channel's content for one variant of a message, validated by that channel's plugin
when saved (through ``db.herald.registry``): its own checks, the tags it may use and those it requires (an SMS
without the opt-out tag is refused at ``/content/body``). Whether incentive tags match the message's
incentive is checked at submit, since the incentive is the next step."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, post, put
from litestar.params import JSONBody
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from engine.errors import ValidationFailed
from engine.messages import UnresolvedRuleset
from engine.model import Campaign as EngineCampaign
from engine.model import Creative as EngineCreative
from engine.model import DeliverySettings, Message
from engine.runtime import Herald
from engine.sourcefile import check_depth
from engine.validation import validate_message
from service.http.auth import EDITORS
from service.http.deps import Caller, DbDep, IdPath, check_lock, etag, expected_lock
from service.http.problems import conflict, error, not_found, unprocessable
from service.http.routes.messages import changed, creative_out, editable
from service.storage.messages import engine_id
from service.storage.rulesets import StoredRulesets
from service.storage.tables import Campaign, Creative, DeliverySettingsRow, MessageRow

Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
Variant = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
#: codes left to submit: they depend on the incentive (step 4), which may not be chosen yet
LATER = ("incentive_required", "incentive_mismatch")


class CreativeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A creative: the channel, the variant (``default`` unless personalization picks others) and the content."""

    channel: Channel
    content: dict[str, Any]
    variant: Variant = "default"


class CreativePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to a creative (``version``: the one you read, or ``If-Match``)."""

    content: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    variant: Variant | msgspec.UnsetType = msgspec.UNSET
    version: int | None = None


_FIRST = re.compile(r"^creatives\[0\]\.?")


def _pointer(path: str) -> str:
    rest = _FIRST.sub("", path)
    if not rest:
        return "/content"
    parts = [p for p in re.findall(r"([^.\[\]]+)|\[(\d+)\]", rest)]
    return "".join("/" + (a or b).replace("~", "~0").replace("/", "~1") for a, b in parts)


def creative_issues(herald: Herald, s: Session, m: MessageRow, channel: str, variant: str,
                    content: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(errors, warnings)`` of one creative in its message as it is now (its rules give ``vars.*``, its
    delivery settings the senders), as the engine's message validation reports them for that creative."""
    try:
        check_depth(content, "content")
    except ValidationFailed as exc:
        return [error("/content", p.code, p.message) for p in exc.problems], []
    campaign = s.get(Campaign, m.campaign_id)
    assert campaign is not None
    resolver = StoredRulesets(s, m.org_id, herald.registry, herald.catalogue)
    rulesets = {}
    for kind, ref in m.rules.items():
        try:
            rulesets[kind] = resolver(ref, kind)
        except (UnresolvedRuleset, ValidationFailed):  # reported at submit, not here
            continue
    delivery = s.get(DeliverySettingsRow, m.id)
    message = Message(
        id=engine_id(m), title=m.title, type=m.type,  # type: ignore[arg-type]
        campaign=EngineCampaign(f"c{campaign.id}", campaign.name, campaign.starts, campaign.ends, campaign.objective),
        strategy=tuple(m.strategy), rulesets=rulesets, channels=tuple(m.channels),
        creatives=(EngineCreative(channel, variant, content),),
        delivery=DeliverySettings(delivery.send_to_dnd, delivery.send_to_control, delivery.tiny_url,
                                  delivery.senders) if delivery else DeliverySettings(),
    )
    errors, warnings = [], []
    for issue in validate_message(message, herald.registry, herald.catalogue):
        if not issue.path.startswith("creatives[0]") or issue.code in LATER:
            continue
        item = error(_pointer(issue.path), issue.code, issue.message)
        (errors if issue.is_error else warnings).append(item)
    return errors, warnings


def _owned_creative(s: Session, m: MessageRow, creative_id: int) -> Creative:
    c = s.exec(select(Creative).where(Creative.id == creative_id, Creative.message_id == m.id,
                                      Creative.org_id == m.org_id)).first()
    if c is None:
        raise not_found("creative of this message")
    return c


def _flush_unique(s: Session, c: Creative) -> None:
    try:
        s.flush()
    except IntegrityError:
        raise conflict(f"the message already has a {c.channel} creative for variant {c.variant!r}", "duplicate") from None


def _saved(s: Session, m: MessageRow, c: Creative, caller: Any, warnings: list[dict[str, str]],
           status: int) -> Response[dict[str, Any]]:
    version = changed(s, m, caller)
    body = {**creative_out(c), "warnings": warnings, "message_version": {"number": version.number,
                                                                         "hash": version.hash}}
    return Response(body, status_code=status, headers=etag(c.lock))


@post("/messages/{message_id:int}/creatives", operation_id="createCreative", tags=["creatives"], guards=[EDITORS],
      sync_to_thread=True)
def create_creative(message_id: IdPath, data: JSONBody[CreativeIn], request: Request, caller: Caller,
                    db: DbDep) -> Response[dict[str, Any]]:
    """Add a creative, validated by its channel's plugin (422 with the places at fault); warnings (SMS segments,
    UCS-2) come back with it."""
    with db.tx() as s:
        m = editable(s, message_id, caller, request)
        errors, warnings = creative_issues(db.herald, s, m, data.channel, data.variant, data.content)
        if errors:
            raise unprocessable(f"the {data.channel} creative has problems", errors)
        assert m.id is not None
        c = Creative(org_id=caller.org_id, message_id=m.id, channel=data.channel, variant=data.variant,
                     content=data.content)
        s.add(c)
        _flush_unique(s, c)
        return _saved(s, m, c, caller, warnings, 201)


@put("/messages/{message_id:int}/creatives/{creative_id:int}", operation_id="updateCreative", tags=["creatives"],
     guards=[EDITORS], sync_to_thread=True)
def update_creative(message_id: IdPath, creative_id: IdPath, data: JSONBody[CreativePatch],
                    request: Request, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Change a creative's content or variant (optimistic locking on the creative: ``If-Match`` or ``version``),
    validated again by its channel."""
    expected = expected_lock(request, data.version)
    with db.tx() as s:
        m = editable(s, message_id, caller)
        c = _owned_creative(s, m, creative_id)
        check_lock(c, expected, "creative")
        content = c.content if data.content is msgspec.UNSET else data.content
        variant = c.variant if data.variant is msgspec.UNSET else data.variant
        errors, warnings = creative_issues(db.herald, s, m, c.channel, variant, content)
        if errors:
            raise unprocessable(f"the {c.channel} creative has problems", errors)
        c.content, c.variant = content, variant
        c.lock += 1
        s.add(c)
        _flush_unique(s, c)
        return _saved(s, m, c, caller, warnings, 200)


@delete("/messages/{message_id:int}/creatives/{creative_id:int}", operation_id="deleteCreative", tags=["creatives"],
        guards=[EDITORS], sync_to_thread=True, status_code=204)
def delete_creative(message_id: IdPath, creative_id: IdPath, caller: Caller, db: DbDep) -> None:
    """Remove a creative (a change of the message like any other)."""
    with db.tx() as s:
        m = editable(s, message_id, caller)
        s.delete(_owned_creative(s, m, creative_id))
        s.flush()
        changed(s, m, caller)


HANDLERS = [create_creative, update_creative, delete_creative]
