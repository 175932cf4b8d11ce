"""An approved message goes out: one send run, its audience frozen and chunked, every recipient decided with
the dry run's façade and sent exactly once through the log transport, the message ``sent`` with a summary."""

from __future__ import annotations

from collections import Counter

from service.worker import durable
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import approve, customers_csv, deliveries, outbox, send_runs, upload


def test_an_approved_message_is_sent_once_to_every_recipient(client, db_engine, org, worker):
    upload(client, org, customers_csv(23))
    m = approve(client, db_engine, org)
    assert m["status"] == "approved"
    assert durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    assert durable.wait_for_run(run.id, timeout=60) == "sent"
    rows = deliveries(db_engine, run.id)
    assert len(rows) == 23 and {r.status for r in rows} == {"sent"}
    assert sorted({r.chunk for r in rows}) == [0, 1, 2]  # 23 recipients in chunks of 10
    sent = outbox(db_engine, {r.key for r in rows})
    assert len(sent) == 23 and len({r.key for r in sent}) == 23
    by_to = {r.to: r.body for r in sent}
    gold = by_to["+919800000000"]  # c0000 is gold: the personalization rule's discount is in what was sent
    assert gold["text"].startswith("Summer sale: 20% off everything") and gold["from"] == "HERALD"
    assert by_to["+919800000001"]["text"].startswith("Summer sale: 10% off")
    assert all(r.provider_id and r.provider_id.startswith("outbox-") for r in rows)
    message = ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))
    assert message["status"] == "sent"
    trail = [(e["action"], e["to"]) for e in ok(client.get(f"{API}/messages/{m['id']}/audit",
                                                           headers=org.headers()))["items"]]
    assert trail[-3:] == [("scheduled", "scheduled"), ("sending", "sending"), ("run_finished", "sent")]
    (done,) = send_runs(db_engine, m["id"])
    assert done.status == "sent" and done.size == 23 and done.summary["sent"] == 23
    assert Counter(done.summary["channels"]) == Counter({"sms": 23})
