"""Send test: a version of a message goes to its points of contact only — rendered for each handle, with a
preview coupon, nothing reserved, the audience untouched and the message's status unchanged (a draft stays a
draft) — and the request is refused, naming the field, when there is nobody to send to or nothing to send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from service.storage.db import transaction
from service.storage.ledger import DbLedgerStore
from service.storage.tables import Delivery, Run
from service.worker import durable
from tests.service.test_messages_support import API, ok, ready_message
from tests.service.worker.conftest import approve, customers_csv, deliveries, outbox, send_runs, upload

EMAIL = {"subject": "Summer sale", "from": "offers@herald.example",
         "html": "<p>{{ vars.discount }} off with {{ coupon.code }}</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
         "text": "{{ vars.discount }} off with {{ coupon.code }}. Unsubscribe: {{ unsubscribe_url }}"}
PHONE, MAIL = "+919876543210", "qa@herald.example"


def draft(client, db_engine, org, *, poc, email=True, coupon=False):
    """A draft message (SMS, and e-mail when told) of a campaign whose audience holds 5 customers, with these
    points of contact; with ``coupon``, a list coupon series of three codes."""
    upload(client, org, customers_csv(5))
    m = ready_message(client, db_engine, org)
    url = f"{API}/messages/{m['id']}"
    if email:
        ok(client.post(f"{url}/creatives", json={"channel": "email", "content": EMAIL}, headers=org.headers()), 201)
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"channels": ["sms", "email"], "version": lock}, headers=org.headers()))
    if coupon:
        inc = ok(client.post(f"{API}/incentives", json={"name": "Codes", "kind": "coupon", "settings": {
            "source": "list", "expiry": {"days": 14}}}, headers=org.headers()), 201)
        ok(client.post(f"{API}/incentives/{inc['id']}/codes", json=["A1", "B2", "C3"], headers=org.headers()), 201)
        ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))
    ok(client.put(f"{url}/delivery", json={"senders": {"sms": {"sender_id": "HERALD"}}, "poc": poc},
                  headers=org.headers()))
    return ok(client.get(url, headers=org.headers()))


def send_test(client, org, message_id, who="marketer", **body):
    return client.post(f"{API}/messages/{message_id}/send-test", json=body or None, headers=org.headers(who))


def run_test(client, org, worker, message_id, who="marketer", **body):
    answer = ok(send_test(client, org, message_id, who, **body), 202)
    assert answer["run_id"] in durable.schedule_once(worker)
    return answer, durable.wait_for_run(answer["run_id"], timeout=60)


def test_a_draft_goes_to_its_points_of_contact_only_with_a_preview_coupon(client, db_engine, org, worker):
    m = draft(client, db_engine, org, coupon=True,
              poc=[{"channel": "sms", "handle": PHONE}, {"channel": "email", "handle": MAIL}])
    assert m["status"] == "draft"
    answer, status = run_test(client, org, worker, m["id"])
    assert answer["recipients"] == 2 and status == "sent"
    rows = deliveries(db_engine, answer["run_id"])
    assert [(r.customer, r.channel, r.status) for r in rows] == [("poc:0", "sms", "sent"), ("poc:1", "email", "sent")]
    sent = {r.channel: r for r in outbox(db_engine, {r.key for r in rows})}
    assert len(sent) == 2
    sms, mail = sent["sms"], sent["email"]
    assert sms.to == PHONE and sms.body["from"] == "HERALD"
    # no rule ran for the handle: the default variant's vars (the catch-all rule's) fill the template
    assert sms.body["text"] == "Summer sale: 10% off everything until Sunday. Reply STOP to opt out"
    grant = rows[1].decision["incentive"]
    assert grant["preview"] is True and grant["code"] in ("A1", "B2", "C3")
    assert mail.to == MAIL and mail.body["subject"] == "Summer sale"
    assert mail.body["text"].startswith(f"10% off with {grant['code']}. Unsubscribe: ")
    # nothing reserved or issued, no incentive on the deliveries, the audience got nothing
    assert DbLedgerStore(db_engine, org.org_id).held_items() == 0
    assert all(r.incentive is None for r in rows)
    with transaction(db_engine) as s:
        touched = s.exec(select(Delivery.customer).where(Delivery.message_id == m["id"])).all()
    assert sorted(touched) == ["poc:0", "poc:1"] and send_runs(db_engine, m["id"]) == []
    message = ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))
    assert message["status"] == "draft"
    assert [e["action"] for e in ok(client.get(f"{API}/messages/{m['id']}/audit", headers=org.headers()))["items"]
            if e["action"] in ("sending", "run_finished", "scheduled")] == []
    report = ok(client.get(f"{API}/runs/{answer['run_id']}/report", headers=org.headers()))
    assert report["sent"] == 2 and report["by_channel"] == {"email": {"sent": 1}, "sms": {"sent": 1}}
    assert report["runs"][0]["status"] == "sent"
    # the message's report counts its real sends only
    assert ok(client.get(f"{API}/messages/{m['id']}/report", headers=org.headers()))["sent"] == 0


def test_a_scheduled_message_stays_scheduled_and_its_real_run_is_untouched(client, db_engine, org, worker):
    upload(client, org, customers_csv(4))
    at = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)

    def poc(url):
        ok(client.put(f"{url}/delivery", json={"senders": {"sms": {"sender_id": "HERALD"}},
                                               "poc": [{"channel": "sms", "handle": PHONE}]}, headers=org.headers()))

    m = approve(client, db_engine, org, schedule={"kind": "at", "at": at.isoformat()}, edit=poc)
    durable.schedule_once(worker)
    (real,) = send_runs(db_engine, m["id"])
    answer, status = run_test(client, org, worker, m["id"], who="approver")
    assert status == "sent" and [r.customer for r in deliveries(db_engine, answer["run_id"])] == ["poc:0"]
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "scheduled"
    assert real.id is not None and deliveries(db_engine, real.id) == []  # the real run still waits for `at`
    assert durable.wait_for_run(real.id, timeout=60) == "sent"
    assert len(deliveries(db_engine, real.id)) == 4
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "sent"


def test_a_handle_the_channel_cannot_take_fails_alone_with_the_reason(client, db_engine, org, worker):
    m = draft(client, db_engine, org, email=False,
              poc=[{"channel": "sms", "handle": "not a number"}, {"channel": "sms", "handle": PHONE}])
    answer, status = run_test(client, org, worker, m["id"], who="approver")
    rows = deliveries(db_engine, answer["run_id"])
    assert [(r.customer, r.status) for r in rows] == [("poc:0", "failed"), ("poc:1", "sent")]
    assert rows[0].errors and "not a number" in rows[0].errors[0]["reason"]
    assert status == "sent" and len(outbox(db_engine, {r.key for r in rows})) == 1


def test_an_earlier_version_is_sent_when_asked(client, db_engine, org, worker):
    m = draft(client, db_engine, org, email=False, poc=[{"channel": "sms", "handle": PHONE}])
    first = ok(send_test(client, org, m["id"]), 202)
    url = f"{API}/messages/{m['id']}"
    ok(client.put(f"{url}/delivery", json={"senders": {"sms": {"sender_id": "OTHER"}},
                                           "poc": [{"channel": "sms", "handle": PHONE}]}, headers=org.headers()))
    answer, status = run_test(client, org, worker, m["id"], who="admin", version=first["version"])
    assert answer["version"] == first["version"] and status == "sent"
    assert durable.wait_for_run(first["run_id"], timeout=60) == "sent"
    (row,) = deliveries(db_engine, answer["run_id"])
    (sms,) = outbox(db_engine, {row.key})
    assert sms.body["from"] == "HERALD"  # the version asked for, not the current one
    current, status = run_test(client, org, worker, m["id"])
    assert current["version"] == first["version"] + 1 and status == "sent"


def test_no_point_of_contact_is_refused_naming_poc(client, db_engine, org):
    m = draft(client, db_engine, org, email=False, poc=[])
    r = send_test(client, org, m["id"])
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert [e["path"] for e in r.json()["errors"]] == ["/poc"]
    with transaction(db_engine) as s:
        assert s.exec(select(Run).where(Run.message_id == m["id"], Run.kind == "test")).all() == []


def test_a_channel_without_a_creative_is_refused_naming_the_point_of_contact(client, db_engine, org):
    m = draft(client, db_engine, org, email=False,
              poc=[{"channel": "sms", "handle": PHONE}, {"channel": "email", "handle": MAIL}])
    r = send_test(client, org, m["id"])
    assert r.status_code == 422
    (e,) = r.json()["errors"]
    assert e["path"] == "/poc/1/channel" and e["code"] == "no_creative"


def test_an_unknown_version_and_a_bad_body_are_refused(client, db_engine, org):
    m = draft(client, db_engine, org, email=False, poc=[{"channel": "sms", "handle": PHONE}])
    r = send_test(client, org, m["id"], version=42)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/version"
    r = send_test(client, org, m["id"], version=0)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/version"
    r = send_test(client, org, m["id"], versoin=1)
    assert r.status_code == 422


def test_another_orgs_message_is_not_found_and_a_service_key_may_not_send(client, db_engine, org, other_org):
    m = draft(client, db_engine, org, email=False, poc=[{"channel": "sms", "handle": PHONE}])
    assert send_test(client, other_org, m["id"]).status_code == 404
    assert send_test(client, other_org, m["id"], "admin").status_code == 404
    assert send_test(client, org, m["id"], "service").status_code == 403
    with transaction(db_engine) as s:
        assert s.exec(select(Run).where(Run.message_id == m["id"], Run.kind == "test")).all() == []
