"""What the sends of a message did: its report (all its send runs, or one), and what the ``log`` transport
wrote for it (the outbox), a page at a time."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.params import FromQuery, Parameter
from sqlmodel import col, select

from service.http.auth import READERS
from service.http.deps import Caller, Db, DbDep, IdPath, encode_cursor, id_cursor, owned, page_limit
from service.storage import links, reports
from service.storage.tables import Delivery, MessageRow, OutboxMessage, Run


def _costs(db: Db) -> dict[str, float]:
    return {name: reg.obj.cost for name, reg in db.herald.registry.channels.items()}


def run_out(run: Run) -> dict[str, Any]:
    """A send run on the wire: id, status, planned instant, size and times."""
    return {"id": run.id, "status": run.status, "at": run.at.isoformat(), "size": run.size,
            "version_hash": run.version_hash,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None}


@get("/messages/{message_id:int}/report", operation_id="messageReport", tags=["delivery"], guards=[READERS],
     sync_to_thread=True)
def message_report(message_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """The message's sends: every send run (status, size, times) and the counts over all of them — audience,
    excluded by reason, control group, sent, delivered, failed, waiting, by channel and variant, incentives,
    cost and clicks (total, unique)."""
    with db.tx() as s:
        m = owned(s, MessageRow, message_id, caller, "message")
        runs = reports.send_runs(s, caller.org_id, message_id)
        body = reports.report(s, caller.org_id, [r.id for r in runs if r.id is not None], _costs(db),
                              links.click_counts(s, caller.org_id, message_id))
        return {"message_id": m.id, "status": m.status, **body, "runs": [run_out(r) for r in runs]}


@get("/runs/{run_id:int}/report", operation_id="runReport", tags=["delivery"], guards=[READERS],
     sync_to_thread=True)
def run_report(run_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """One send run's report (as the message's, for this run only)."""
    with db.tx() as s:
        run = owned(s, Run, run_id, caller, "run")
        assert run.id is not None
        clicks = links.click_counts(s, caller.org_id, run.message_id, run.id)
        return {"message_id": run.message_id, **reports.report(s, caller.org_id, [run.id], _costs(db), clicks),
                "runs": [run_out(run)]}


@get("/messages/{message_id:int}/outbox", operation_id="messageOutbox", tags=["delivery"], guards=[READERS],
     sync_to_thread=True)
def message_outbox(message_id: IdPath, caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
                   limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """What the ``log`` transport wrote for the message's sends, oldest first: channel, recipient address,
    the rendered request and the customer."""
    size = page_limit(db.settings, limit)
    after = id_cursor(cursor)
    with db.tx() as s:
        owned(s, MessageRow, message_id, caller, "message")
        rows = s.exec(select(OutboxMessage, Delivery.customer).join(Delivery, col(Delivery.key) == col(OutboxMessage.key))
                      .where(Delivery.org_id == caller.org_id, Delivery.message_id == message_id,
                             col(OutboxMessage.id) > after)
                      .order_by(col(OutboxMessage.id)).limit(size + 1)).all()
    items = [{"id": o.id, "channel": o.channel, "to": o.to, "customer": customer, "body": o.body,
              "at": o.created_at.isoformat()} for o, customer in rows[:size]]
    more = encode_cursor(rows[size - 1][0].id) if len(rows) > size else None
    return {"items": items, "next_cursor": more}


HANDLERS = [message_report, run_report, message_outbox]
