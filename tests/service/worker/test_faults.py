"""Delivery under faults: transient errors retried with backoff, permanent ones falling back to the next
channel (and marking the dead address), every channel failing (the coupon released), two workers on one
batch, and a coupon pool smaller than the audience — never two sends for one key, nobody lost."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

from sqlmodel import select

from engine.contracts import SendRequest, SendResult
from service.storage.db import transaction
from service.storage.tables import Customer
from service.worker import durable, sending
from service.worker.outbox import LogTransport
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

EMAIL = {"subject": "Summer sale", "from": "offers@herald.example",
         "html": "<p>{{ vars.discount }} off</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
         "text": "{{ vars.discount }} off. Unsubscribe: {{ unsubscribe_url }}"}


class Scripted:
    """A transport that answers from a script per recipient (else accepts), and counts what reached it."""

    def __init__(self, script=None, then=None):
        self.script = script or (lambda request, n: None)
        self.calls: dict[str, int] = defaultdict(int)
        self.accepted: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def deliver(self, request: SendRequest) -> SendResult:
        with self.lock:  # counted per idempotency key: other tests' messages may share the numbers
            self.calls[request.idempotency_key] += 1
            n = self.calls[request.idempotency_key]
        answer = self.script(request, n)
        if answer is None:
            with self.lock:
                self.accepted[request.idempotency_key] += 1
            return SendResult.accepted(f"p-{request.idempotency_key[:8]}-{n}")
        return answer


def with_email(client, org):
    def edit(url):
        ok(client.post(f"{url}/creatives", json={"channel": "email", "content": EMAIL}, headers=org.headers()), 201)
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"channels": ["sms", "email"], "version": lock}, headers=org.headers()))
    return edit


def run_message(client, db_engine, org, worker, **kw):
    m = approve(client, db_engine, org, **kw)
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    status = durable.wait_for_run(run.id, timeout=90)
    return m, run.id, status


def test_transient_errors_are_retried_until_the_provider_takes_the_message(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(12))
    flaky = Scripted(lambda r, n: SendResult.transient("503 from the gateway", retry_after=0.01) if n <= 2 else None)
    fresh_worker.transports = {"sms": flaky}
    _, run_id, status = run_message(client, db_engine, org, fresh_worker)
    rows = deliveries(db_engine, run_id)
    assert status == "sent" and {r.status for r in rows} == {"sent"}
    assert all(r.attempts == 3 and len(r.errors) == 2 for r in rows)
    assert all(e["outcome"] == "transient" and e["reason"] == "503 from the gateway" for r in rows for e in r.errors)
    keys = {r.key for r in rows}
    assert {flaky.calls[k] for k in keys} == {3} and {flaky.accepted[k] for k in keys} == {1}
    assert keys <= set(flaky.accepted)  # the same idempotency key on every try


def test_a_dead_number_falls_back_to_email_and_is_marked_unreachable(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(6))
    dead = "+919800000002"
    sms = Scripted(lambda r, n: SendResult.permanent("21211 invalid 'To' number", unreachable=True)
                   if r.to == dead else None)
    fresh_worker.transports = {"sms": sms, "email": LogTransport(db_engine)}
    _, run_id, status = run_message(client, db_engine, org, fresh_worker, edit=with_email(client, org))
    rows = {r.customer: r for r in deliveries(db_engine, run_id)}
    moved = rows["c0002"]
    assert status == "sent" and moved.status == "sent" and moved.channel == "email" and moved.tried == ["sms"]
    assert moved.errors[0]["reason"] == "21211 invalid 'To' number"
    (mail,) = outbox(db_engine, {moved.key})
    assert mail.to == "c2@example.com" and mail.body["subject"] == "Summer sale" and "10% off" in mail.body["text"]
    assert all(r.channel == "sms" and r.status == "sent" for c, r in rows.items() if c != "c0002")
    with transaction(db_engine) as s:
        c = s.exec(select(Customer).where(Customer.org_id == org.org_id, Customer.external_id == "c0002")).one()
    assert c.subscriptions.get("sms") == "invalid"  # the next run will not try this number


def test_when_every_channel_fails_the_delivery_fails_with_each_reason_and_the_coupon_is_released(
        client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(3))
    inc = ok(client.post(f"{API}/incentives", json={"name": "Codes", "kind": "coupon", "settings": {
        "source": "list", "expiry": {"days": 14}}}, headers=org.headers()), 201)
    ok(client.post(f"{API}/incentives/{inc['id']}/codes", json=["A1", "B2", "C3"], headers=org.headers()), 201)

    def edit(url):
        with_email(client, org)(url)
        ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))

    refuse = Scripted(lambda r, n: SendResult.permanent(f"{r.channel} refused") if "0001" in r.to or r.to == "c1@example.com" else None)
    fresh_worker.transports = {"sms": refuse, "email": refuse}
    _, run_id, status = run_message(client, db_engine, org, fresh_worker, edit=edit)
    rows = {r.customer: r for r in deliveries(db_engine, run_id)}
    failed = rows["c0001"]
    assert failed.status == "failed" and failed.tried == ["sms", "email"]
    assert [(e["channel"], e["reason"]) for e in failed.errors] == [("sms", "sms refused"), ("email", "email refused")]
    assert failed.incentive is not None and failed.incentive.get("released") is True
    issued = [r.incentive for c, r in rows.items() if c != "c0001"]
    assert all(i is not None and i.get("issued_on") for i in issued)
    codes = [i["code"] for i in issued if i]
    assert len(set(codes)) == 2 and status == "sent"
    # the released code is free again: the ledger holds exactly the two issued ones
    from service.storage.ledger import DbLedgerStore
    assert DbLedgerStore(db_engine, org.org_id).held_items() == 2


def test_two_workers_on_one_batch_send_each_key_once(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(10))
    m = approve(client, db_engine, org)
    slow = Scripted()
    fresh_worker.transports = {"sms": slow}
    durable.runs.schedule_approved(fresh_worker)  # the run exists, but no workflow sends it
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    assert durable.runs.begin(fresh_worker, run.id) == 1
    durable.runs.prepare_chunk(fresh_worker, run.id, 0)
    assert durable.runs.prepare_chunk(fresh_worker, run.id, 0) == 0  # a repeated step writes nothing twice
    ids = [r.id for r in deliveries(db_engine, run.id)]
    results: list[dict] = []
    threads = [threading.Thread(target=lambda t=t: results.append(sending.send_batch(fresh_worker, run.id, ids, t)))
               for t in ("w1/batch", "w2/batch", "w3/batch")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.get("sent", 0) for r in results) == 10
    keys = {r.key for r in deliveries(db_engine, run.id)}
    assert {slow.accepted[k] for k in keys} == {1} and len(keys) == 10
    assert {r.status for r in deliveries(db_engine, run.id)} == {"sent"}


def test_a_coupon_pool_smaller_than_the_audience_is_never_over_issued(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(40))
    with_limits(fresh_worker, chunk_size=7)  # six chunks decided in parallel by the chunk queue's workers
    fresh_worker.transports = {"sms": LogTransport(db_engine)}
    inc = ok(client.post(f"{API}/incentives", json={"name": "Few", "kind": "coupon", "settings": {
        "source": "list", "expiry": {"days": 14}}}, headers=org.headers()), 201)
    codes = [f"Q{i:02d}" for i in range(15)]
    ok(client.post(f"{API}/incentives/{inc['id']}/codes", json=codes, headers=org.headers()), 201)

    def edit(url):
        ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))

    _, run_id, status = run_message(client, db_engine, org, fresh_worker, edit=edit)
    rows = deliveries(db_engine, run_id)
    sent = [r for r in rows if r.status == "sent"]
    assert status == "sent" and len(rows) == 40 and len(sent) == 15
    assert sorted(r.incentive["code"] for r in sent if r.incentive) == codes  # each code once
    assert Counter(r.excluded_reason for r in rows if r.status == "excluded") == {"incentive_unavailable": 25}


def test_a_restarted_worker_takes_back_its_own_claims_at_once_and_nobody_elses(client, db_engine, org, fresh_worker):
    from datetime import timedelta

    from sqlalchemy import update

    from service.storage.tables import Delivery
    from service.worker.runs import now

    upload(client, org, customers_csv(4))
    m = approve(client, db_engine, org)
    durable.runs.schedule_approved(fresh_worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    durable.runs.begin(fresh_worker, run.id)
    durable.runs.prepare_chunk(fresh_worker, run.id, 0)
    rows = deliveries(db_engine, run.id)
    later = now() + timedelta(minutes=5)
    with transaction(db_engine) as s:  # as a worker killed mid-send leaves them: claimed, lease running
        for r, owner in zip(rows, [fresh_worker.name, fresh_worker.name, "someone-else", "someone-else"], strict=True):
            s.execute(update(Delivery).where(Delivery.id == r.id).values(
                status="sending", claimed_by=f"{owner}/herald-run-x", claimed_until=later))
    assert sending.release_claims(fresh_worker) == 2
    plan = sending.plan_pass(fresh_worker, run.id, 0)
    assert sorted(i for _, ids in plan.batches for i in ids) == sorted(r.id for r in rows[:2])
    fresh_worker.transports = {"sms": Scripted()}
    assert sending.send_batch(fresh_worker, run.id, [r.id for r in rows], "restarted/b") == {"sent": 2}


def test_points_are_credited_once_per_recipient_with_their_expiry(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(5))
    fresh_worker.transports = {"sms": LogTransport(db_engine)}
    inc = ok(client.post(f"{API}/incentives", json={"name": "Points", "kind": "points", "settings": {
        "program": "Rewards", "amount": 250, "expiry": {"days": 30}}}, headers=org.headers()), 201)

    def edit(url):
        ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))

    m, run_id, status = run_message(client, db_engine, org, fresh_worker, edit=edit)
    rows = deliveries(db_engine, run_id)
    assert status == "sent" and all(r.incentive and r.incentive["status"] == "credited" for r in rows)
    assert all(r.incentive["amount"] == 250 and r.incentive["expires_on"] for r in rows if r.incentive)
    report = ok(client.get(f"{API}/messages/{m['id']}/report", headers=org.headers()))
    assert report["incentives"] == {"coupons_issued": 0, "points_credited": 5, "points": 1250, "released": 0}
    # crediting again (a repeated step) returns the first credit: the ledger holds one entry per recipient
    from service.storage.ledger import DbLedgerStore
    from service.storage.tables import Run
    from service.worker.runs import approved_message, now
    from service.worker.sending import _issue
    with transaction(db_engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        message = approved_message(fresh_worker, s, run)
    first = dict(rows[0].incentive or {})
    _issue(fresh_worker, message, [rows[0]], DbLedgerStore(db_engine, org.org_id), now())
    assert rows[0].incentive == first


def test_frequency_caps_read_what_was_really_sent(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(3))
    fresh_worker.transports = {"sms": LogTransport(db_engine)}
    run_message(client, db_engine, org, fresh_worker, title="First")

    def capped(url):
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"optimizers": {"frequency_cap": {"limits": [
            {"channel": "overall", "period": "day", "max": 1}]}}, "version": lock}, headers=org.headers()))

    _, run_id, status = run_message(client, db_engine, org, fresh_worker, title="Second", edit=capped)
    rows = deliveries(db_engine, run_id)
    assert {r.status for r in rows} == {"excluded"} and {r.excluded_reason for r in rows} == {"frequency_cap"}


def _prepared(client, db_engine, org, worker, n, edit=None):
    """A run of ``n`` customers decided into delivery rows (chunk 0), none sent: the run's id and its rows."""
    upload(client, org, customers_csv(n))
    m = approve(client, db_engine, org, edit=edit)
    durable.runs.schedule_approved(worker)  # the run exists, but no workflow sends it
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    durable.runs.begin(worker, run.id)
    durable.runs.prepare_chunk(worker, run.id, 0)
    return run.id, deliveries(db_engine, run.id)


def _coupon(client, org, codes):
    inc = ok(client.post(f"{API}/incentives", json={"name": "Codes", "kind": "coupon", "settings": {
        "source": "list", "expiry": {"days": 14}}}, headers=org.headers()), 201)
    ok(client.post(f"{API}/incentives/{inc['id']}/codes", json=codes, headers=org.headers()), 201)

    def edit(url):
        ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))
    return edit


def test_rows_whose_claim_is_taken_over_mid_batch_are_left_to_their_new_claimant(client, db_engine, org,
                                                                                  fresh_worker):
    from datetime import timedelta

    from sqlalchemy import update

    from service.storage.ledger import DbLedgerStore
    from service.storage.tables import Delivery
    from service.worker.runs import now

    run_id, rows = _prepared(client, db_engine, org, fresh_worker, 6,
                          edit=_coupon(client, org, [f"T{i:02d}" for i in range(6)]))
    assert len(rows) == 6 and all(r.incentive for r in rows)
    taken = {r.key for r in rows[:2]}
    later = now() + timedelta(minutes=5)

    def take_over(request, n):  # while this worker sends, another takes these two rows over (its lease ran out)
        if request.idempotency_key in taken:
            with transaction(db_engine) as s:
                s.execute(update(Delivery).where(Delivery.key == request.idempotency_key).values(
                    claimed_by="other/herald-run-y", claimed_until=later))
        return None

    fresh_worker.transports = {"sms": Scripted(take_over)}
    ids = [r.id for r in rows if r.id is not None]
    assert sending.send_batch(fresh_worker, run_id, ids, "w1/batch") == {"sent": 4, "lost_claim": 2}
    after = {r.key: r for r in deliveries(db_engine, run_id)}
    for key in taken:  # untouched: still the new claimant's to record, its coupon still only reserved
        r = after[key]
        assert (r.status, r.claimed_by, r.attempts, r.sent_at) == ("sending", "other/herald-run-y", 0, None)
        assert r.incentive is not None and r.incentive["status"] == "reserved"
    ledger = DbLedgerStore(db_engine, org.org_id)
    for r in after.values():
        assert r.incentive is not None
        entry = ledger.entry(("coupon", r.incentive["series"]), (r.incentive["message"], r.incentive["customer"]))
        assert entry is not None and entry.status == ("reserved" if r.key in taken else "issued")
        assert r.key in taken or (r.status, r.claimed_by, r.attempts, r.incentive["status"]) == (
            "sent", None, 1, "issued")


def test_a_batch_is_recorded_in_one_transaction(client, db_engine, org, fresh_worker):
    from sqlalchemy import event

    run_id, rows = _prepared(client, db_engine, org, fresh_worker, 8,
                          edit=_coupon(client, org, [f"R{i:02d}" for i in range(8)]))
    me = threading.get_ident()
    commits: list[int] = []

    def count(conn):
        if threading.get_ident() == me:
            commits.append(1)

    fresh_worker.transports = {"sms": Scripted(lambda request, n: SendResult.transient("busy") if n == 1
                                               and request.idempotency_key == rows[0].key else None)}
    event.listen(db_engine, "commit", count)
    try:
        tally = sending.send_batch(fresh_worker, run_id, [r.id for r in rows if r.id is not None], "w1/batch")
    finally:
        event.remove(db_engine, "commit", count)
    assert tally == {"sent": 7, "retrying": 1}
    assert len(commits) == 3  # the claim, the look at the message and customers, and every outcome with its coupon
    assert Counter(r.incentive["status"] for r in deliveries(db_engine, run_id) if r.incentive) == {
        "issued": 7, "reserved": 1}
