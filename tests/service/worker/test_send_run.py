"""An approved message goes out: one send run, its audience frozen and chunked, every recipient decided with
the dry run's façade and sent exactly once through the log transport, the message ``sent`` with a summary."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.contracts import SendResult
from service.storage.db import is_sqlite
from service.worker import durable
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import (
    approve,
    customers_csv,
    deliveries,
    outbox,
    send_runs,
    upload,
    with_limits,
)


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


def test_the_report_counts_what_was_sent_by_channel_and_variant_and_the_outbox_shows_it(client, db_engine, org,
                                                                                      worker):
    upload(client, org, customers_csv(9))
    m = approve(client, db_engine, org)
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None and durable.wait_for_run(run.id, timeout=60) == "sent"
    report = ok(client.get(f"{API}/messages/{m['id']}/report", headers=org.headers()))
    assert report["status"] == "sent" and report["audience"] == 9 and report["sent"] == 9
    assert report["failed"] == 0 and report["waiting"] == 0 and report["excluded"] == {}
    assert report["by_channel"] == {"sms": {"sent": 9}}
    assert report["by_variant"] == {"gold": {"sent": 3}, "default": {"sent": 6}}
    assert report["cost"] > 0 and [r["status"] for r in report["runs"]] == ["sent"]
    assert ok(client.get(f"{API}/runs/{run.id}/report", headers=org.headers()))["sent"] == 9
    page = ok(client.get(f"{API}/messages/{m['id']}/outbox", params={"limit": 5}, headers=org.headers()))
    assert len(page["items"]) == 5 and page["next_cursor"]
    rest = ok(client.get(f"{API}/messages/{m['id']}/outbox", params={"cursor": page["next_cursor"]},
                         headers=org.headers()))["items"]
    seen = [i["customer"] for i in page["items"] + rest]
    assert sorted(seen) == [f"c{i:04d}" for i in range(9)]
    assert all(i["channel"] == "sms" and i["body"]["text"].startswith("Summer sale") for i in page["items"])


def test_another_org_sees_no_report_and_no_outbox(client, db_engine, org, other_org, worker):
    upload(client, org, customers_csv(2))
    m = approve(client, db_engine, org)
    for path in ("report", "outbox"):
        assert client.get(f"{API}/messages/{m['id']}/{path}", headers=other_org.headers()).status_code == 404


@pytest.mark.slow
def test_twenty_thousand_recipients_in_process_on_sqlite_each_sent_once_through_a_flaky_provider(
        client, db_engine, org, fresh_worker, database_url):
    if not is_sqlite(database_url):
        pytest.skip("PostgreSQL runs this with worker processes: test_scale_out.py")
    from tests.service.worker.test_faults import Scripted

    n = 20_000
    flaky = Scripted(lambda r, k: SendResult.transient("503", retry_after=0.01) if k == 1 and hash(r.to) % 5 == 0
                     else None)
    fresh_worker.transports = {"sms": flaky}
    with_limits(fresh_worker, chunk_size=1000, batch_size=100)
    upload(client, org, customers_csv(n, prefix="b"))
    m = approve(client, db_engine, org, title="Big")
    durable.schedule_once(fresh_worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None and durable.wait_for_run(run.id, timeout=900) == "sent"
    rows = deliveries(db_engine, run.id)
    assert len(rows) == n and {r.status for r in rows} == {"sent"}
    assert {flaky.accepted[r.key] for r in rows} == {1}  # every key accepted once
    assert sum(1 for r in rows if r.attempts == 2) > n // 10  # the fifth that failed first was retried
