"""Org isolation of the message flow: org B cannot read, change, submit or approve org A's messages, creatives,
incentives or rulesets, id guessing included — each attempt is a 404 that looks like a missing id, and org A's
data is unchanged afterwards."""

from __future__ import annotations

from tests.service.test_messages_support import API, insert_dry_run, ok, ready_message


def test_org_b_cannot_touch_org_as_message_flow(client, db_engine, org, other_org):
    m = ready_message(client, db_engine, org)
    url = f"{API}/messages/{m['id']}"
    cid = m["creatives"][0]["id"]
    inc = ok(client.post(f"{API}/incentives", json={"name": "Series", "kind": "coupon", "settings": {
        "source": "list", "expiry": {"days": 14}}}, headers=org.headers()), 201)
    h = ok(client.post(f"{url}/submit", headers=org.headers()))["submitted_version"]["hash"]
    run_id = insert_dry_run(db_engine, org, m["id"], h)
    b, b_approver = other_org.headers(), other_org.headers("approver")
    attempts = [
        client.get(url, headers=b),
        client.patch(url, json={"title": "mine now", "version": m["version"]}, headers=b),
        client.delete(url, headers=b),
        client.put(f"{url}/rules", json={}, headers=b),
        client.put(f"{url}/audience", json={"include": []}, headers=b),
        client.put(f"{url}/schedule", json={"kind": "immediate"}, headers=b),
        client.put(f"{url}/delivery", json={}, headers=b),
        client.put(f"{url}/incentive", json={"incentive_id": None}, headers=b),
        client.post(f"{url}/creatives", json={"channel": "sms", "content": {"body": "x {{ optout }}"}}, headers=b),
        client.put(f"{url}/creatives/{cid}", json={"content": {"body": "x {{ optout }}"}, "version": 1}, headers=b),
        client.delete(f"{url}/creatives/{cid}", headers=b),
        client.get(f"{url}/versions", headers=b),
        client.get(f"{url}/versions/1", headers=b),
        client.get(f"{url}/audit", headers=b),
        client.post(f"{url}/submit", headers=b),
        client.post(f"{url}/approve", json={"version_hash": h, "dry_run_id": run_id}, headers=b_approver),
        client.post(f"{url}/reject", json={"reason": "no"}, headers=b_approver),
        client.post(f"{url}/withdraw", json={}, headers=b_approver),
        client.post(f"{url}/cancel", json={}, headers=b),
        client.get(f"{API}/incentives/{inc['id']}", headers=b),
        client.patch(f"{API}/incentives/{inc['id']}", json={"name": "x", "version": 1}, headers=b),
        client.post(f"{API}/incentives/{inc['id']}/codes", json=["STOLEN"], headers=b),
        client.post(f"{API}/campaigns/{m['campaign_id']}/messages", json={"title": "in your campaign"}, headers=b),
        client.get(f"{API}/rulesets/sale-personalization/versions", headers=b),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts), [(r.request.url, r.text) for r in attempts
                                                                         if r.status_code != 404]
    # listings of org B show nothing of org A
    assert ok(client.get(f"{API}/rulesets", headers=b))["items"] == []
    assert ok(client.get(f"{API}/incentives", headers=b))["items"] == []
    # id guessing: every id near org A's is as missing to org B as one that does not exist
    for guess in range(max(1, m["id"] - 3), m["id"] + 4):
        assert client.get(f"{API}/messages/{guess}", headers=b).status_code == 404
        assert client.get(f"{API}/messages/{guess}/versions/1", headers=b).status_code == 404
    # org B's own message cannot take org A's groups, incentive or rulesets
    campaign = ok(client.post(f"{API}/campaigns", json={"name": "B"}, headers=b), 201)
    mine = ok(client.post(f"{API}/campaigns/{campaign['id']}/messages", json={"title": "B"}, headers=b), 201)
    burl = f"{API}/messages/{mine['id']}"
    assert client.put(f"{burl}/audience", json={"include": m["audience"]["include"]}, headers=b).status_code == 422
    assert client.put(f"{burl}/incentive", json={"incentive_id": inc["id"]}, headers=b).status_code == 422
    assert client.put(f"{burl}/rules", json={"personalization": "sale-personalization"},
                      headers=b).status_code == 422
    # org A's message is exactly as it was
    after = ok(client.get(url, headers=org.headers()))
    assert after["status"] == "awaiting_approval" and after["title"] == m["title"]
    assert after["creatives"] == m["creatives"] and after["submitted_version"]["hash"] == h
    trail = ok(client.get(f"{url}/audit", headers=org.headers()))["items"]
    assert {e["actor"]["id"] for e in trail} <= set(org.user_ids.values())
    assert ok(client.get(f"{API}/incentives/{inc['id']}", headers=org.headers()))["codes"] == 0
