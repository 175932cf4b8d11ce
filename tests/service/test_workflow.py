"""The workflow over HTTP: draft → submit → approve bound to a version and a dry run; four eyes; edits void
approvals; reject, withdraw and cancel; every transition in the audit log."""

from __future__ import annotations

from tests.service.test_messages_support import API, SMS, insert_dry_run, make_campaign, ok, ready_message


def submit(client, org, m):
    return client.post(f"{API}/messages/{m['id']}/submit", headers=org.headers())


def test_the_whole_flow_draft_submit_approve(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    assert m["status"] == "draft"
    sub = ok(submit(client, org, m))
    assert sub["status"] == "awaiting_approval"
    version = sub["submitted_version"]
    assert version == sub["current_version"] and len(version["hash"]) == 64
    run_id = insert_dry_run(db_engine, org, m["id"], version["hash"])
    approved = ok(client.post(f"{API}/messages/{m['id']}/approve",
                              json={"version_hash": version["hash"], "dry_run_id": run_id},
                              headers=org.headers("approver")))
    assert approved["status"] == "approved" and approved["approved_version"] == version
    trail = ok(client.get(f"{API}/messages/{m['id']}/audit", headers=org.headers()))["items"]
    moves = [(e["action"], e["from"], e["to"]) for e in trail]
    assert moves[-2:] == [("submitted", "draft", "awaiting_approval"), ("approved", "awaiting_approval", "approved")]
    assert moves[0] == ("created", None, "draft")
    assert trail[-1]["actor"]["name"] == "approver" and trail[-1]["version_hash"] == version["hash"]
    stored = ok(client.get(f"{API}/messages/{m['id']}/versions/{version['number']}", headers=org.headers()))
    assert stored["hash"] == version["hash"]
    assert stored["document"]["rules"]["personalization"].startswith("sale-personalization@")
    assert stored["document"]["audience"]["include"] and stored["document"]["creatives"][0]["content"] == SMS


def test_submit_returns_every_problem_at_once_and_changes_nothing(client, org):
    campaign = make_campaign(client, org)
    m = ok(client.post(f"{API}/campaigns/{campaign['id']}/messages", json={"title": "Bare"}, headers=org.headers()), 201)
    url = f"{API}/messages/{m['id']}"
    ok(client.put(f"{url}/schedule", json={"kind": "at", "at": "2027-03-01T10:00:00+00:00"}, headers=org.headers()))
    r = submit(client, org, m)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    found = {(e["path"], e["code"]) for e in r.json()["errors"]}
    assert ("/audience/include", "required") in found  # no audience
    assert any(path == "/creatives" for path, _ in found)  # no creative
    assert ok(client.get(url, headers=org.headers()))["status"] == "draft"
    # with a creative, the engine reports the schedule outside the campaign window as well as the audience
    ok(client.post(f"{url}/creatives", json={"channel": "sms", "content": {"body": "Hi {{ optout }}"}},
                   headers=org.headers()), 201)
    found = {(e["path"], e["code"]) for e in submit(client, org, m).json()["errors"]}
    assert found == {("/schedule/at", "outside_campaign"), ("/audience/include", "required")}


def test_the_author_cannot_approve_even_as_approver_and_a_marketer_cannot_approve(client, db_engine, org):
    from service.storage.db import transaction
    from service.storage.tables import User

    with transaction(db_engine) as s:  # the marketer also holds the approver role
        user = s.get(User, org.user_ids["marketer"])
        assert user is not None
        user.roles = "marketer,approver"
    from service.storage.keys import issue_key

    with transaction(db_engine) as s:
        u = s.get(User, org.user_ids["marketer"])
        assert u is not None
        _, both = issue_key(s, u)
    m = ready_message(client, db_engine, org)
    h = ok(submit(client, org, m))["submitted_version"]["hash"]
    run_id = insert_dry_run(db_engine, org, m["id"], h)
    body = {"version_hash": h, "dry_run_id": run_id}
    own = client.post(f"{API}/messages/{m['id']}/approve", json=body, headers={"Authorization": f"Bearer {both}"})
    assert own.status_code == 403 and "author" in own.json()["detail"]
    assert client.post(f"{API}/messages/{m['id']}/approve", json=body,
                       headers=org.headers("marketer2")).status_code == 403
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "awaiting_approval"


def test_approval_binds_to_the_hash_and_to_a_dry_run_of_that_version(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    h = ok(submit(client, org, m))["submitted_version"]["hash"]
    url = f"{API}/messages/{m['id']}/approve"
    stale = client.post(url, json={"version_hash": "0" * 64, "dry_run_id": 1}, headers=org.headers("approver"))
    assert stale.status_code == 409
    missing = client.post(url, json={"version_hash": h, "dry_run_id": 10**9}, headers=org.headers("approver"))
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "/dry_run_id"
    first = ok(client.get(f"{API}/messages/{m['id']}/versions", headers=org.headers()))["items"][-1]
    old_run = insert_dry_run(db_engine, org, m["id"], first["hash"])  # a dry run of an older version
    other = client.post(url, json={"version_hash": h, "dry_run_id": old_run}, headers=org.headers("approver"))
    assert other.status_code == 422 and "another version" in other.json()["errors"][0]["message"]
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "awaiting_approval"


def test_an_edit_after_approval_voids_it_with_a_new_version_in_the_audit(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    h = ok(submit(client, org, m))["submitted_version"]["hash"]
    ok(client.post(f"{API}/messages/{m['id']}/approve",
                   json={"version_hash": h, "dry_run_id": insert_dry_run(db_engine, org, m["id"], h)},
                   headers=org.headers("approver")))
    cid = m["creatives"][0]["id"]
    edited = ok(client.put(f"{API}/messages/{m['id']}/creatives/{cid}",
                           json={"content": {"body": "Last day: {{ vars.discount }} off! {{ optout }}"}, "version": 1},
                           headers=org.headers()))
    assert edited["message_version"]["hash"] != h
    after = ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))
    assert after["status"] == "draft" and after["approved_version"] is None and after["submitted_version"] is None
    assert after["current_version"]["hash"] == edited["message_version"]["hash"]
    last = ok(client.get(f"{API}/messages/{m['id']}/audit", headers=org.headers()))["items"][-1]
    assert (last["action"], last["from"], last["to"]) == ("edited", "approved", "draft")
    assert last["version_hash"] == edited["message_version"]["hash"] and "approval" in last["reason"]
    from sqlmodel import select

    from service.storage.db import transaction
    from service.storage.tables import Approval

    with transaction(db_engine) as s:
        assert [a.active for a in s.exec(select(Approval).where(Approval.message_id == m["id"])).all()] == [False]
    # approving the old hash is now refused: the message is a draft again
    again = client.post(f"{API}/messages/{m['id']}/approve", json={"version_hash": h, "dry_run_id": 1},
                        headers=org.headers("approver"))
    assert again.status_code == 409 and "draft" in again.json()["detail"]


def test_a_campaign_edit_voids_the_approval_of_its_messages(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    h = ok(submit(client, org, m))["submitted_version"]["hash"]
    ok(client.post(f"{API}/messages/{m['id']}/approve",
                   json={"version_hash": h, "dry_run_id": insert_dry_run(db_engine, org, m["id"], h)},
                   headers=org.headers("approver")))
    ok(client.patch(f"{API}/campaigns/{m['campaign_id']}", json={"name": "Renamed", "version": 1},
                    headers=org.headers()))
    after = ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))
    assert after["status"] == "draft" and after["current_version"]["hash"] != h


def test_reject_needs_a_reason_then_an_edit_makes_a_draft(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    ok(submit(client, org, m))
    url = f"{API}/messages/{m['id']}"
    assert client.post(f"{url}/reject", json={}, headers=org.headers("approver")).status_code == 422
    assert client.post(f"{url}/reject", json={"reason": "  "}, headers=org.headers("approver")).status_code == 422
    rejected = ok(client.post(f"{url}/reject", json={"reason": "the discount is wrong"},
                              headers=org.headers("approver")))
    assert rejected["status"] == "rejected"
    ok(client.patch(url, json={"title": "Sale v2", "version": rejected["version"]}, headers=org.headers()))
    trail = ok(client.get(f"{url}/audit", headers=org.headers()))["items"]
    assert [(e["action"], e["to"], e["reason"]) for e in trail[-2:]] == [
        ("rejected", "rejected", "the discount is wrong"), ("edited", "draft", "edited after rejection")]


def test_withdraw_and_cancel_are_separate_and_illegal_moves_are_409(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    url = f"{API}/messages/{m['id']}"
    r = client.post(f"{url}/cancel", json={}, headers=org.headers())
    assert r.status_code == 409 and "draft" in r.json()["detail"]
    assert client.post(f"{url}/withdraw", json={}, headers=org.headers("approver")).status_code == 409
    h = ok(submit(client, org, m))["submitted_version"]["hash"]
    assert submit(client, org, m).status_code == 409
    body = {"version_hash": h, "dry_run_id": insert_dry_run(db_engine, org, m["id"], h)}
    ok(client.post(f"{url}/approve", json=body, headers=org.headers("approver")))
    back = ok(client.post(f"{url}/withdraw", json={"reason": "legal review"}, headers=org.headers("approver2")))
    assert back["status"] == "awaiting_approval" and back["submitted_version"]["hash"] == h
    assert back["approved_version"] is None
    ok(client.post(f"{url}/approve", json=body, headers=org.headers("approver2")))
    cancelled = ok(client.post(f"{url}/cancel", json={"reason": "stock ran out"}, headers=org.headers()))
    assert cancelled["status"] == "cancelled"
    assert client.patch(url, json={"title": "x", "version": cancelled["version"]},
                        headers=org.headers()).status_code == 409
    trail = [(e["action"], e["from"], e["to"]) for e in
             ok(client.get(f"{url}/audit", headers=org.headers()))["items"]]
    assert trail[-4:] == [("approved", "awaiting_approval", "approved"),
                          ("approval_withdrawn", "approved", "awaiting_approval"),
                          ("approved", "awaiting_approval", "approved"), ("cancelled", "approved", "cancelled")]
