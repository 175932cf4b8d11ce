"""What the worker does with links and receipts: with tiny URLs on, what is sent carries the recipient's own
``{public_url}/t/{code}`` links that redirect to the approved content's link and count clicks; without a
public URL such a message is refused at scheduling, saying why; SMPP receipts move deliveries forward once."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import col, select

from service.storage.db import transaction
from service.storage.tables import Delivery
from service.worker import durable, runs
from service.worker.assemble import SmppReceipts
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import approve, deliveries, outbox, send_runs, upload, with_limits

LINK = "https://shop.example/sale?utm=sms"


def with_link(client, org):
    def edit(url):
        m = ok(client.get(url, headers=org.headers()))
        (creative,) = m["creatives"]
        ok(client.put(f"{url}/creatives/{creative['id']}", json={"content": {
            "body": f"Summer sale {{{{ vars.discount }}}} off: {LINK} {{{{ optout }}}}"}, "version": creative["version"]},
            headers=org.headers()))
        ok(client.put(f"{url}/delivery", json={"senders": {"sms": {"sender_id": "HERALD"}}, "tiny_url": True},
                      headers=org.headers()))
    return edit


def test_sent_links_are_the_recipients_own_tiny_urls_that_redirect_and_count(client, db_engine, org, fresh_worker):
    with_limits(fresh_worker, public_url="https://go.herald.example")
    upload(client, org, "id,tier,phone\nc1,gold,+919800000001\nc2,silver,+919800000002\n")
    m = approve(client, db_engine, org, edit=with_link(client, org))
    durable.schedule_once(fresh_worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None and durable.wait_for_run(run.id, timeout=60) == "sent"
    rows = deliveries(db_engine, run.id)
    texts = {o.to: o.body["text"] for o in outbox(db_engine, {r.key for r in rows})}
    codes = {to: re.findall(r"https://go\.herald\.example/t/([A-Za-z0-9_-]+)", t) for to, t in texts.items()}
    assert all(len(c) == 1 for c in codes.values()) and LINK not in "".join(texts.values())
    one, two = codes["+919800000001"][0], codes["+919800000002"][0]
    assert one != two  # per recipient
    hop = client.get(f"/t/{one}", follow_redirects=False)
    assert hop.status_code == 302 and hop.headers["location"] == LINK
    client.get(f"/t/{one}", follow_redirects=False)
    assert client.get("/t/not-a-code", follow_redirects=False).status_code == 404
    report = ok(client.get(f"{API}/messages/{m['id']}/report", headers=org.headers()))
    assert report["clicks"] == {"links": 2, "clicks": 2, "unique_clicks": 1, "recipients": 1}
    assert report["by_status"] == {"clicked": 1, "sent": 1}


def test_a_tiny_url_message_without_a_public_url_is_refused_at_scheduling(client, db_engine, org, fresh_worker):
    with_limits(fresh_worker, public_url=None)
    upload(client, org, "id,tier,phone\nc1,gold,+919800000001\n")
    m = approve(client, db_engine, org, edit=with_link(client, org))
    assert runs.schedule_approved(fresh_worker) == []
    assert send_runs(db_engine, m["id"]) == []
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "failed"
    trail = ok(client.get(f"{API}/messages/{m['id']}/audit", headers=org.headers()))["items"]
    assert trail[-1]["action"] == "schedule_failed" and "HERALD_PUBLIC_URL" in trail[-1]["reason"]


@dataclass
class SmscReceipt:
    provider_id: str
    status: str
    error_code: str | None = None
    done_at: datetime | None = None
    message_id: str = ""


def _one_sent(client, db_engine, org, worker) -> Delivery:
    """The delivery of a message sent to one customer."""
    upload(client, org, "id,tier,phone\nc1,gold,+919800000001\n")
    m = approve(client, db_engine, org)
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None and durable.wait_for_run(run.id, timeout=60) == "sent"
    (row,) = deliveries(db_engine, run.id)
    return row


def test_smpp_receipts_move_the_delivery_forward_once(client, db_engine, org, fresh_worker):
    row = _one_sent(client, db_engine, org, fresh_worker)
    assert row.provider_id
    receipts = SmppReceipts(db_engine)
    done = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert receipts.apply(SmscReceipt(row.provider_id, "enroute")) == {}  # not final: nothing moves
    assert receipts.apply(SmscReceipt(row.provider_id, "delivered", done_at=done, message_id="m1"))["applied"] == 1
    assert receipts.apply(SmscReceipt(row.provider_id, "delivered", done_at=done, message_id="m1"))["duplicates"] == 1
    assert receipts.apply(SmscReceipt("unknown-id", "delivered")) == {"unmatched": 1}  # no delivery has that id
    with transaction(db_engine) as s:
        assert s.exec(select(Delivery.status).where(Delivery.id == row.id)).one() == "delivered"


def test_an_smpp_receipt_that_comes_before_its_message_id_is_recorded_still_lands(client, db_engine, org,
                                                                                   fresh_worker, caplog):
    row = _one_sent(client, db_engine, org, fresh_worker)
    early = f"smsc-{row.id}-early"
    receipts = SmppReceipts(db_engine, retry_delays=(0.2, 0.2, 0.2, 0.2))

    async def receipt_then_record() -> None:
        arriving = asyncio.create_task(receipts(SmscReceipt(early, "delivered", message_id=early)))
        await asyncio.sleep(0.3)  # the receipt was tried once and found nothing; now the worker records the id
        with transaction(db_engine) as s:
            s.execute(update(Delivery).where(col(Delivery.id) == row.id).values(provider_id=early))
        await arriving

    asyncio.run(receipt_then_record())
    with transaction(db_engine) as s:
        assert s.exec(select(Delivery.status).where(Delivery.id == row.id)).one() == "delivered"
    # one that never matches is given up, saying so
    asyncio.run(receipts(SmscReceipt("never-sent", "delivered")))
    assert "matched no delivery after 0.8 s; dropped" in caplog.text
