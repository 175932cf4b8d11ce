"""Deleting a customer erases what runs kept about them — the rendered message of each delivery and of its
decision, the outbox row, the stored dry-run decision — and leaves every count as it was."""

from __future__ import annotations

from sqlmodel import select

from service.storage.db import transaction
from service.storage.tables import Run, RunDecision
from service.worker import durable
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import approve, customers_csv, deliveries, outbox, send_runs, upload


def _dry_run_rows(db_engine, message_id: int, customer: str) -> list[RunDecision]:
    with transaction(db_engine) as s:
        return list(s.exec(select(RunDecision).join(Run, Run.id == RunDecision.run_id).where(  # type: ignore[arg-type]
            Run.message_id == message_id, RunDecision.customer == customer)).all())


def test_a_deleted_customers_messages_are_erased_and_the_counts_stay(client, db_engine, org, worker):
    upload(client, org, customers_csv(4, prefix="e"))
    m = approve(client, db_engine, org)
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None and durable.wait_for_run(run.id, timeout=60) == "sent"
    client.post(f"{API}/messages/{m['id']}/dry-run", json={}, headers=org.headers()).raise_for_status()
    report = ok(client.get(f"{API}/messages/{m['id']}/report", headers=org.headers()))
    before = {d.customer: d for d in deliveries(db_engine, run.id)}
    gone, kept = before["e0001"], before["e0002"]
    assert gone.payload and set(gone.decision) - {"erased"} and _dry_run_rows(db_engine, m["id"], "e0001")
    (mail,) = outbox(db_engine, {gone.key})
    assert mail.to == "+919800000001" and "Summer sale" in mail.body["text"]

    assert client.delete(f"{API}/customers/e0001", headers=org.headers()).status_code == 204

    after = {d.customer: d for d in deliveries(db_engine, run.id)}
    erased = after["e0001"]
    assert erased.payload is None and erased.decision.get("erased") is True
    assert not {"rendered", "trace", "vars", "incentive"} & set(erased.decision)
    assert (erased.status, erased.channel, erased.variant, erased.key, erased.sent_at) == \
        (gone.status, gone.channel, gone.variant, gone.key, gone.sent_at)
    (mail,) = outbox(db_engine, {gone.key})
    assert mail.to == "" and mail.body == {"erased": True}
    for row in _dry_run_rows(db_engine, m["id"], "e0001"):
        assert row.data.get("erased") is True and "rendered" not in row.data and "trace" not in row.data
    # nobody else's data moved, and the report counts exactly what it counted
    assert after["e0002"].payload == kept.payload and after["e0002"].decision == kept.decision
    assert ok(client.get(f"{API}/messages/{m['id']}/report", headers=org.headers())) == report
