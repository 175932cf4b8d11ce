"""``POST /messages/{id}/diff`` with ``ruleset``: the message evaluated with two versions of one of its rulesets."""

from __future__ import annotations

from .test_messages_support import API, PERSONALIZATION, ok, ready_message, upload_ruleset

CUSTOMERS = ("id,tier,timezone,phone,subscription.sms\n"
             "g1,gold,Asia/Kolkata,+919881924865,subscribed\n"
             "s1,silver,Asia/Kolkata,+919812345678,subscribed\n"
             "p1,platinum,Asia/Kolkata,+919876453392,subscribed\n")
AT = "2026-07-01T00:00:00+00:00"


def test_a_new_ruleset_version_changes_the_variant_of_exactly_the_customers_its_rule_matches(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    ok(client.post(f"{API}/customers/bulk", content=CUSTOMERS.encode(),
                   headers=org.headers(**{"Content-Type": "text/csv"})))
    first = upload_ruleset(client, org)
    second = upload_ruleset(client, org, PERSONALIZATION.replace("then: {variant: gold,", "then: {variant: vip,")
                            .replace("expect: {fired: [gold], variant: gold}", "expect: {fired: [gold], variant: vip}"))
    assert first["version"] != second["version"]
    body = {"at": AT, "samples": 5,
            "ruleset": {"name": "sale-personalization", "from_version": first["version"], "to_version": second["version"]}}
    diff = ok(client.post(f"{API}/messages/{m['id']}/diff", json=body, headers=org.headers()))
    assert diff["total"] == 3
    assert diff["changed"]["variant"] == 2 and diff["changed"]["inclusion"] == 0 and diff["changed"]["channel"] == 0
    assert sorted(s["customer"] for s in diff["samples"]["variant"]) == ["g1", "p1"]
    assert {(s["from"]["variant"], s["to"]["variant"]) for s in diff["samples"]["variant"]} == {("gold", "vip")}


def test_a_ruleset_the_message_does_not_use_or_an_unknown_version_is_422(client, db_engine, org):
    m = ready_message(client, db_engine, org)
    url = f"{API}/messages/{m['id']}/diff"
    r = client.post(url, json={"at": AT, "ruleset": {"name": "other", "from_version": "a", "to_version": "b"}},
                    headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/ruleset/name"
    v = upload_ruleset(client, org)["version"]
    r = client.post(url, json={"at": AT, "ruleset": {"name": "sale-personalization", "from_version": v,
                                                     "to_version": "nope"}}, headers=org.headers())
    assert r.status_code == 422
    both = client.post(url, json={"at": AT, "from_version": 1, "ruleset": {"name": "sale-personalization",
                                                                           "from_version": v, "to_version": v}},
                       headers=org.headers())
    assert both.status_code == 422 and both.json()["errors"][0]["path"] == "/ruleset"


def test_another_org_cannot_diff_the_message(client, db_engine, org, other_org):
    m = ready_message(client, db_engine, org)
    v = upload_ruleset(client, org)["version"]
    r = client.post(f"{API}/messages/{m['id']}/diff",
                    json={"at": AT, "ruleset": {"name": "sale-personalization", "from_version": v, "to_version": v}},
                    headers=other_org.headers())
    assert r.status_code == 404
