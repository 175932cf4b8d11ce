"""Call tasks: a message on the call-task channel queues one task per recipient (never two for one key, even
when the send is retried); agents list them, claim them (a second claimer is refused) and complete them with a
validated outcome — ``reached`` marks the delivery delivered, ``wrong_number`` the customer's number invalid.
Another org sees none of it."""

from __future__ import annotations

import threading

from sqlmodel import select

from engine.contracts import SendRequest
from service.storage import tasks
from service.storage.db import transaction
from service.storage.tables import CallTask, Customer
from service.worker import durable
from service.worker.tasks import TaskTransport
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import approve, customers_csv, deliveries, send_runs, upload

TASK = {"script": "Hello {{ customer.id }}, this is Herald about our summer sale.", "queue": "retention",
        "call_window": {"start": "10:00", "end": "18:00"}, "priority": "high",
        "outcomes": [{"name": "result", "type": "choice", "options": ["interested", "not_interested"]}]}


def on_call_tasks(client, org):
    def edit(url):
        ok(client.post(f"{url}/creatives", json={"channel": "call_task", "content": TASK}, headers=org.headers()), 201)
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"channels": ["call_task"], "version": lock}, headers=org.headers()))
    return edit


def send_call_tasks(client, db_engine, org, worker, n=6):
    upload(client, org, customers_csv(n))
    worker.transports = {"call_task": TaskTransport(db_engine)}
    m = approve(client, db_engine, org, edit=on_call_tasks(client, org))
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    assert durable.wait_for_run(run.id, timeout=90) == "sent"
    return m, run.id


def all_tasks(client, org, **params):
    items, cursor = [], None
    while True:
        page = ok(client.get(f"{API}/tasks", params={**params, "limit": 4, **({"cursor": cursor} if cursor else {})},
                             headers=org.headers()))
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_a_call_task_message_queues_one_task_per_recipient_and_a_retry_adds_none(client, db_engine, org,
                                                                                   fresh_worker):
    m, run_id = send_call_tasks(client, db_engine, org, fresh_worker)
    rows = deliveries(db_engine, run_id)
    sent = [d for d in rows if d.status == "sent"]
    assert len(sent) == 6 and all(d.channel == "call_task" and (d.provider_id or "").startswith("task-") for d in sent)
    listed = all_tasks(client, org, message_id=m["id"])  # pages of 4: the cursor walks them all
    assert sorted(t["customer"] for t in listed) == sorted(d.customer for d in sent)
    first = next(t for t in listed if t["customer"] == "c0001")
    assert first["status"] == "open" and first["phone"] == "+919800000001" and first["queue"] == "retention"
    assert first["task"]["script"] == "Hello c0001, this is Herald about our summer sale."
    assert first["task"]["priority"] == "high" and first["task"]["call_window"]["timezone"] == "Asia/Kolkata"
    assert first["run_id"] == run_id and first["message_id"] == m["id"]

    # the worker crashed after the task was written: the retried send finds it and answers the same
    d = next(d for d in sent if d.customer == "c0001")
    again = fresh_worker.loop.run(fresh_worker.transports["call_task"].deliver(
        SendRequest("call_task", "+919800000001", first["task"], d.key)))
    assert again.ok and again.provider_id == d.provider_id
    with transaction(db_engine) as s:
        assert len(s.exec(select(CallTask).where(CallTask.key == d.key)).all()) == 1
    assert len(all_tasks(client, org, message_id=m["id"])) == 6


def test_claim_and_complete(client, db_engine, org, other_org, fresh_worker):
    m, run_id = send_call_tasks(client, db_engine, org, fresh_worker, n=4)
    by_customer = {t["customer"]: t for t in all_tasks(client, org)}
    a, b, c = by_customer["c0000"], by_customer["c0001"], by_customer["c0002"]

    # another org sees nothing and can touch nothing
    assert ok(client.get(f"{API}/tasks", headers=other_org.headers()))["items"] == []
    r = client.post(f"{API}/tasks/{a['id']}/claim", headers=other_org.headers())
    assert r.status_code == 404

    # approvers do not work tasks; service keys do
    assert client.get(f"{API}/tasks", headers=org.headers("approver")).status_code == 403
    claimed = ok(client.post(f"{API}/tasks/{a['id']}/claim", headers=org.headers()))
    assert claimed["status"] == "claimed" and claimed["claimed_by"] == org.user_ids["marketer"]
    assert ok(client.post(f"{API}/tasks/{a['id']}/claim", headers=org.headers()))["status"] == "claimed"  # again: same
    r = client.post(f"{API}/tasks/{a['id']}/claim", headers=org.headers("service"))
    assert r.status_code == 409 and r.json()["type"].endswith("/claimed_by_another")
    assert [t["id"] for t in all_tasks(client, org, status="claimed")] == [a["id"]]

    # only the claimant completes, with a known outcome
    r = client.post(f"{API}/tasks/{a['id']}/complete", json={"outcome": "reached"}, headers=org.headers("service"))
    assert r.status_code == 409 and r.json()["type"].endswith("/not_claimant")
    r = client.post(f"{API}/tasks/{a['id']}/complete", json={"outcome": "hung_up"}, headers=org.headers())
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["/outcome"]
    r = client.post(f"{API}/tasks/{b['id']}/complete", json={"outcome": "reached"}, headers=org.headers())
    assert r.status_code == 409 and r.json()["type"].endswith("/not_claimed")
    done = ok(client.post(f"{API}/tasks/{a['id']}/complete", json={"outcome": "reached", "note": "wants the offer"},
                          headers=org.headers()))
    assert done["status"] == "done" and done["outcome"] == "reached" and done["note"] == "wants the offer"
    r = client.post(f"{API}/tasks/{a['id']}/claim", headers=org.headers("service"))
    assert r.status_code == 409 and r.json()["type"].endswith("/done")

    # a service key works a task too; wrong_number marks the number invalid for call tasks
    ok(client.post(f"{API}/tasks/{c['id']}/claim", headers=org.headers("service")))
    ok(client.post(f"{API}/tasks/{c['id']}/complete", json={"outcome": "wrong_number"}, headers=org.headers("service")))
    ok(client.post(f"{API}/tasks/{b['id']}/claim", headers=org.headers()))
    ok(client.post(f"{API}/tasks/{b['id']}/complete", json={"outcome": "no_answer"}, headers=org.headers()))

    statuses = {d.customer: d.status for d in deliveries(db_engine, run_id)}
    assert statuses == {"c0000": "delivered", "c0001": "sent", "c0002": "sent", "c0003": "sent"}
    with transaction(db_engine) as s:
        people = {p.external_id: p.subscriptions for p in s.exec(select(Customer).where(Customer.org_id == org.org_id))}
    assert people["c0002"].get("call_task") == "invalid"
    assert "call_task" not in people["c0000"] and "call_task" not in people["c0001"]
    assert {t["customer"] for t in all_tasks(client, org, status="done")} == {"c0000", "c0001", "c0002"}
    assert [t["customer"] for t in all_tasks(client, org, status="open")] == ["c0003"]
    r = client.get(f"{API}/tasks", params={"status": "lost"}, headers=org.headers())
    assert r.status_code == 422


def test_agents_racing_for_one_task_leave_it_with_exactly_one(client, db_engine, org, fresh_worker):
    send_call_tasks(client, db_engine, org, fresh_worker, n=1)
    (task,) = all_tasks(client, org)
    users = [org.user_ids[who] for who in ("marketer", "marketer2", "admin", "service")]
    start = threading.Barrier(len(users))
    won, refused = [], []

    def claim(user_id):
        start.wait()
        try:
            with transaction(db_engine) as s:
                won.append(tasks.claim(s, org.org_id, task["id"], user_id).claimed_by)
        except tasks.TaskStateError as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=claim, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and refused == ["claimed_by_another"] * 3
    listed = ok(client.get(f"{API}/tasks", params={"status": "claimed"}, headers=org.headers()))["items"]
    assert [t["claimed_by"] for t in listed] == won
