"""Messages over HTTP: step 1 with optimistic locking, the rules, audience, schedule and delivery steps, and
versions as content hashes."""

from __future__ import annotations

from tests.service.test_messages_support import API, make_campaign, make_group, ok, upload_ruleset


def new_message(client, org, **body):
    campaign = make_campaign(client, org)
    return ok(client.post(f"{API}/campaigns/{campaign['id']}/messages", json={"title": "Sale", **body},
                          headers=org.headers()), 201)


def test_a_message_is_created_as_a_draft_with_a_first_version(client, org):
    m = new_message(client, org, strategy=["personalization", "x_engage"])
    assert m["status"] == "draft" and m["version"] == 1 and m["author_id"] == org.user_ids["marketer"]
    assert m["current_version"]["number"] == 1
    again = client.post(f"{API}/campaigns/{m['campaign_id']}/messages", json={"title": "Sale"}, headers=org.headers())
    assert again.status_code == 409  # the title is unique within the campaign


def test_unknown_strategies_and_channels_are_422_at_their_index(client, org):
    campaign = make_campaign(client, org)
    r = client.post(f"{API}/campaigns/{campaign['id']}/messages",
                    json={"title": "X", "strategy": ["personalization", "telepathy"], "channels": ["pigeon"]},
                    headers=org.headers())
    assert r.status_code == 422
    assert {(e["path"], e["code"]) for e in r.json()["errors"]} == {("/strategy/1", "unknown_strategy"),
                                                                    ("/channels/0", "unknown_channel")}
    assert ok(client.get(f"{API}/campaigns/{campaign['id']}/messages", headers=org.headers()))["items"] == []


def test_a_stale_patch_is_409_and_a_patch_without_a_version_428(client, org):
    m = new_message(client, org)
    url = f"{API}/messages/{m['id']}"
    assert client.patch(url, json={"title": "New"}, headers=org.headers()).status_code == 428
    first = ok(client.patch(url, json={"title": "New"}, headers=org.headers(**{"If-Match": '"1"'})))
    assert first["version"] == 2 and first["current_version"]["number"] == 2
    stale = client.patch(url, json={"title": "Newer", "version": 1}, headers=org.headers())
    assert stale.status_code == 409 and stale.json()["type"].endswith("version_conflict")
    assert ok(client.get(url, headers=org.headers()))["title"] == "New"


def test_the_same_content_is_the_same_version(client, org):
    m = new_message(client, org)
    url = f"{API}/messages/{m['id']}"
    v2 = ok(client.patch(url, json={"title": "Other", "version": 1}, headers=org.headers()))["current_version"]
    v3 = ok(client.patch(url, json={"title": "Sale", "version": 2}, headers=org.headers()))["current_version"]
    assert v3 == m["current_version"] and v2["number"] == 2
    versions = ok(client.get(f"{API}/messages/{m['id']}/versions", headers=org.headers()))["items"]
    assert [v["number"] for v in versions] == [2, 1]


def test_rules_must_name_a_stored_ruleset_of_that_kind(client, org):
    m = new_message(client, org)
    url = f"{API}/messages/{m['id']}/rules"
    r = client.put(url, json={"personalization": "nope", "astrology": "x"}, headers=org.headers())
    assert r.status_code == 422
    assert {(e["path"], e["code"]) for e in r.json()["errors"]} == {("/personalization", "unknown_ruleset"),
                                                                    ("/astrology", "unknown_kind")}
    stored = upload_ruleset(client, org)
    wrong = client.put(url, json={"channel_priority": "sale-personalization"}, headers=org.headers())
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["code"] == "kind"
    done = ok(client.put(url, json={"personalization": stored["ref"]}, headers=org.headers()))
    assert done["rules"] == {"personalization": stored["ref"]}


def test_the_audience_takes_only_the_orgs_groups(client, db_engine, org, other_org):
    m = new_message(client, org)
    mine, theirs = make_group(db_engine, org, "mine"), make_group(db_engine, other_org, "theirs")
    url = f"{API}/messages/{m['id']}/audience"
    r = client.put(url, json={"include": [mine, theirs]}, headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"] == [
        {"path": "/include/1", "code": "not_found", "message": f"no audience group {theirs} in your org"}]
    both = client.put(url, json={"include": [mine], "exclude": [mine]}, headers=org.headers())
    assert both.status_code == 422 and both.json()["errors"][0]["path"] == "/exclude/0"
    done = ok(client.put(url, json={"include": [mine]}, headers=org.headers()))
    assert done["audience"] == {"include": [mine], "exclude": []}
    doc = ok(client.get(f"{API}/messages/{m['id']}/versions/{done['current_version']['number']}",
                        headers=org.headers()))["document"]
    assert [g["group"] for g in doc["audience"]["include"]] == [mine]


def test_schedule_and_delivery_are_checked_and_kept(client, org):
    m = new_message(client, org)
    url = f"{API}/messages/{m['id']}"
    naive = client.put(f"{url}/schedule", json={"kind": "at", "at": "2026-07-04T19:00:00"}, headers=org.headers())
    assert naive.status_code == 422 and naive.json()["errors"][0] == {
        "path": "/at", "code": "timezone_required", "message": "the date-time needs a time zone offset, e.g. +05:30"}
    ok(client.put(f"{url}/schedule", json={"kind": "at", "at": "2026-07-04T19:00:00+05:30",
                                           "quiet_hours": ["21:00", "09:00"]}, headers=org.headers()))
    bad = client.put(f"{url}/delivery", json={"senders": {"fax": {}}, "poc": [{"channel": "sms", "handle": "+1"}]},
                     headers=org.headers())
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/senders/fax"
    done = ok(client.put(f"{url}/delivery", json={"senders": {"sms": {"sender_id": "HERALD"}}, "tiny_url": True,
                                                  "poc": [{"channel": "sms", "handle": "+14155550123"}]},
                         headers=org.headers()))
    assert done["delivery"]["tiny_url"] is True and done["schedule"]["quiet_hours"] == ["21:00", "09:00"]
    doc = ok(client.get(f"{url}/versions/{done['current_version']['number']}", headers=org.headers()))["document"]
    assert doc["poc"] == [{"channel": "sms", "handle": "+14155550123"}] and doc["delivery"]["tiny_url"] is True
    assert doc["schedule"]["at"] == "2026-07-04T19:00:00+05:30"


def test_a_never_submitted_draft_can_be_deleted_a_submitted_one_not(client, db_engine, org):
    from tests.service.test_messages_support import ready_message

    m = new_message(client, org)
    assert client.delete(f"{API}/messages/{m['id']}", headers=org.headers()).status_code == 204
    assert client.get(f"{API}/messages/{m['id']}", headers=org.headers()).status_code == 404
    ready = ready_message(client, db_engine, org, title="Kept")
    ok(client.post(f"{API}/messages/{ready['id']}/submit", headers=org.headers()))
    assert client.delete(f"{API}/messages/{ready['id']}", headers=org.headers()).status_code == 409


def test_approvers_read_but_do_not_edit(client, org):
    m = new_message(client, org)
    assert client.get(f"{API}/messages/{m['id']}", headers=org.headers("approver")).status_code == 200
    r = client.patch(f"{API}/messages/{m['id']}", json={"title": "x", "version": 1}, headers=org.headers("approver"))
    assert r.status_code == 403
