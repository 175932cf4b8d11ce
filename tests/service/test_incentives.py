"""Incentives over HTTP: settings checked by the incentive type's plugin, coupon code uploads (all or nothing,
duplicates refused with their lines), the message's incentive, and the submit check of tags against it."""

from __future__ import annotations

from tests.service.test_messages_support import API, ok, ready_message

SERIES = {"name": "Summer codes", "kind": "coupon", "settings": {"source": "list", "expiry": {"days": 14}}}


def test_settings_are_checked_by_the_plugin_at_their_path(client, org):
    r = client.post(f"{API}/incentives", json={"name": "Bad", "kind": "coupon",
                                              "settings": {"length": 2, "expiry": {"days": 7}}}, headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/settings/length"
    r = client.post(f"{API}/incentives", json={"name": "Bad", "kind": "lottery"}, headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/kind"
    points = ok(client.post(f"{API}/incentives", json={"name": "Points", "kind": "points", "settings": {
        "program": "Rewards", "amount": 200, "expiry": {"days": 90}}}, headers=org.headers()), 201)
    assert points["kind"] == "points" and points["version"] == 1
    assert [i["name"] for i in ok(client.get(f"{API}/incentives", headers=org.headers()))["items"]] == ["Points"]


def test_codes_upload_is_all_or_nothing_and_names_duplicate_lines(client, org):
    inc = ok(client.post(f"{API}/incentives", json=SERIES, headers=org.headers()), 201)
    url = f"{API}/incentives/{inc['id']}/codes"
    csv_headers = org.headers(**{"Content-Type": "text/csv"})
    r = client.post(url, content=b"code\nA1\nB2\nA1\n", headers=csv_headers)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"path": "codes.csv:4", "code": "duplicate",
                                   "message": "code 'A1' repeats codes.csv:2"}]
    assert ok(client.get(f"{API}/incentives/{inc['id']}", headers=org.headers()))["codes"] == 0
    assert ok(client.post(url, content=b"A1\nB2\n", headers=csv_headers), 201)["added"] == 2
    again = client.post(url, json=["C3", "B2"], headers=org.headers())
    assert again.status_code == 422 and again.json()["errors"][0]["path"] == "/1"
    assert ok(client.post(url, json=["C3"], headers=org.headers()), 201)["total"] == 3
    assert client.post(url, content=b"x", headers=org.headers(**{"Content-Type": "image/png"})).status_code == 415


def test_the_messages_incentive_is_in_its_version_and_checked_at_submit(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    url = f"{API}/messages/{m['id']}"
    inc = ok(client.post(f"{API}/incentives", json=SERIES, headers=org.headers()), 201)
    ok(client.post(f"{API}/incentives/{inc['id']}/codes", json=["A1", "B2"], headers=org.headers()), 201)
    set_ = ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))
    doc = ok(client.get(f"{url}/versions/{set_['current_version']['number']}", headers=org.headers()))["document"]
    assert doc["incentive"] == {"kind": "coupon", "settings": {"source": "list", "expiry": {"days": 14},
                                                               "codes": ["A1", "B2"]}}
    # the creative shows no coupon tag: a warning only; a creative showing a points tag with a coupon: an error
    ok(client.post(f"{url}/creatives", json={"channel": "email", "content": {
        "subject": "Points", "from": "offers@herald.example", "html": "<p>{{ points.amount }} points</p><a href='{{ unsubscribe_url }}'>x</a>"}},
        headers=org.headers()), 201)
    r = client.post(f"{url}/submit", headers=org.headers())
    assert r.status_code == 422
    [item] = [e for e in r.json()["errors"] if e["code"] == "incentive_mismatch"]
    assert item["path"].startswith("/creatives/") and item["path"].endswith("/content")
    # another org's incentive cannot be attached
    assert client.put(f"{url}/incentive", json={"incentive_id": 10**9}, headers=org.headers()).status_code == 422


def test_an_incentive_edit_voids_the_approval_of_messages_using_it(client, db_engine, org):
    from tests.service.test_messages_support import insert_dry_run

    m = ready_message(client, db_engine, org)
    url = f"{API}/messages/{m['id']}"
    inc = ok(client.post(f"{API}/incentives", json={"name": "P", "kind": "points", "settings": {
        "program": "Rewards", "amount": 200, "expiry": {"days": 90}}}, headers=org.headers()), 201)
    ok(client.put(f"{url}/incentive", json={"incentive_id": inc["id"]}, headers=org.headers()))
    h = ok(client.post(f"{url}/submit", headers=org.headers()))["submitted_version"]["hash"]
    ok(client.post(f"{url}/approve", json={"version_hash": h, "dry_run_id": insert_dry_run(db_engine, org, m["id"], h)},
                   headers=org.headers("approver")))
    ok(client.patch(f"{API}/incentives/{inc['id']}", json={"settings": {"program": "Rewards", "amount": 300,
                                                                       "expiry": {"days": 90}}, "version": 1},
                    headers=org.headers()))
    assert ok(client.get(url, headers=org.headers()))["status"] == "draft"
