"""Test sends: ``POST /messages/{id}/send-test`` sends a version of the message to its points of contact (the
``poc`` of its delivery settings) — not to its audience, with no rules, no frequency caps and a preview
incentive (nothing reserved or issued) — and leaves the message's status alone, so a draft can be tried.

The HTTP layer only records the request: a run of ``kind`` ``test`` (``scheduled``) that a worker starts like
a send run (``service.worker.test_sends`` decides and renders each point of contact). Its progress and
outcome are the run's report (``GET /runs/{id}/report``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import post
from litestar.params import JSONBody

from engine.errors import EngineError
from service.http.adhoc import engine_refusal
from service.http.auth import READERS
from service.http.deps import Caller, DbDep, Id, IdPath, owned
from service.http.problems import conflict, error, unprocessable
from service.storage import messages, runs
from service.storage.tables import MessageRow, MessageVersion, Run

#: the largest request body (``{"version": n}``)
MAX_BODY = 1024


class SendTestIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which version to send (its number; default: the message's current version, snapshotted now)."""

    version: Id | None = None


def _version(s: Any, caller: Any, message: MessageRow, number: int | None) -> MessageVersion:
    if number is None:
        return runs.sources.current_version(s, message, caller.user_id)
    assert message.id is not None
    found = runs.version_by_number(s, caller.org_id, message.id, number)
    if found is None:
        raise unprocessable("no such version", [error("/version", "unknown_version",
                                                      f"the message has no version {number}")])
    return found


def check_pocs(version: MessageVersion, channels: Any) -> list[dict[str, str]]:
    """The version's points of contact, or 422 naming what is wrong: none at all (``/poc``), a channel no
    plugin registers, or a channel the version has no creative for (``/poc/<n>/channel``)."""
    document = version.document or {}
    pocs = [p for p in document.get("poc") or [] if isinstance(p, dict)]
    if not pocs:
        raise unprocessable("the message has no points of contact", [error(
            "/poc", "required", "add points of contact ({channel, handle}) to the message's delivery settings")])
    with_creative = {c.get("channel") for c in document.get("creatives") or [] if isinstance(c, dict)}
    problems = []
    for i, p in enumerate(pocs):
        channel = p.get("channel")
        if channel not in channels:
            problems.append(error(f"/poc/{i}/channel", "unknown_channel", f"no plugin registers channel {channel!r}"))
        elif channel not in with_creative:
            problems.append(error(f"/poc/{i}/channel", "no_creative",
                                  f"version {version.number} has no {channel} creative to send to {p.get('handle')!r}"))
    if problems:
        raise unprocessable("a point of contact cannot get the message", problems)
    return [{"channel": str(p["channel"]), "handle": str(p.get("handle", ""))} for p in pocs]


@post("/messages/{message_id:int}/send-test", operation_id="sendTestMessage", tags=["delivery"], guards=[READERS],
      sync_to_thread=True, status_code=202, request_max_body_size=MAX_BODY)
def send_test(message_id: IdPath, caller: Caller, db: DbDep,
              data: JSONBody[SendTestIn | None] = None) -> dict[str, Any]:
    """Send a version of the message (``{"version": n}``; default the current one) to its points of contact:
    a test run a worker sends soon. Returns ``{run_id, version, recipients, poc}``; follow it with
    ``GET /runs/{run_id}/report``. Nothing of the audience, no incentive reserved, the message's status kept."""
    number = data.version if data is not None else None
    with db.tx() as s:
        message = owned(s, MessageRow, message_id, caller, "message")
        if message.status == messages.CANCELLED:
            raise conflict("the message is cancelled: it sends nothing, not even a test", "cancelled")
        version = _version(s, caller, message, number)
        pocs = check_pocs(version, db.herald.registry.channels)
        try:
            runs.sources.load(db.herald, s, caller.org_id, version)
        except EngineError as exc:
            raise engine_refusal(exc, ()) from None
        assert version.id is not None
        run = Run(org_id=caller.org_id, message_id=message_id, version_id=version.id, version_hash=version.hash,
                  kind="test", at=datetime.now(UTC), audience="poc", summary={}, summary_hash="",
                  created_by=caller.user_id, status="scheduled")
        s.add(run)
        s.flush()
        return {"run_id": run.id, "message_id": message_id, "version": version.number,
                "version_hash": version.hash, "recipients": len(pocs), "poc": pocs}


HANDLERS = [send_test]
