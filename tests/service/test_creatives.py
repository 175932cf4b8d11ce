"""Creatives are validated by their channel's plugin when saved, with the place at fault."""

from __future__ import annotations

from tests.service.test_messages_support import API, make_campaign, ok


def message(client, org, **body):
    campaign = make_campaign(client, org)
    return ok(client.post(f"{API}/campaigns/{campaign['id']}/messages", json={"title": "Sale", **body},
                          headers=org.headers()), 201)


def test_an_sms_without_the_opt_out_tag_is_422_at_the_body(client, org):
    m = message(client, org)
    url = f"{API}/messages/{m['id']}/creatives"
    r = client.post(url, json={"channel": "sms", "content": {"body": "Summer sale: 20% off"}}, headers=org.headers())
    assert r.status_code == 422
    assert [(e["path"], e["code"]) for e in r.json()["errors"]] == [("/content/body", "missing_required_tag")]
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["creatives"] == []


def test_unknown_tags_keys_and_channels_are_refused_and_warnings_returned(client, org):
    m = message(client, org)
    url = f"{API}/messages/{m['id']}/creatives"
    r = client.post(url, json={"channel": "sms", "content": {"body": "Hi {{ customer.shoe_size }} {{ optout }}",
                                                              "colour": "red"}}, headers=org.headers())
    assert r.status_code == 422
    assert {(e["path"], e["code"]) for e in r.json()["errors"]} == {("/content/body", "unknown_tag"),
                                                                    ("/content/colour", "unknown_key")}
    assert client.post(url, json={"channel": "pigeon", "content": {}}, headers=org.headers()).json()["errors"][0][
        "path"] == "/channel"
    long = "Zażółć gęślą jaźń " * 12 + "{{ optout }}"
    saved = ok(client.post(url, json={"channel": "sms", "content": {"body": long}}, headers=org.headers()), 201)
    assert {w["code"] for w in saved["warnings"]} >= {"unicode", "segments"}


def test_a_creative_edit_is_locked_and_validated_and_makes_a_new_version(client, org):
    m = message(client, org)
    url = f"{API}/messages/{m['id']}/creatives"
    c = ok(client.post(url, json={"channel": "sms", "content": {"body": "Hi {{ optout }}"}}, headers=org.headers()), 201)
    bad = client.put(f"{url}/{c['id']}", json={"content": {"body": "Hi"}, "version": 1}, headers=org.headers())
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/content/body"
    good = ok(client.put(f"{url}/{c['id']}", json={"content": {"body": "Hello {{ optout }}"}, "version": 1},
                         headers=org.headers()))
    assert good["version"] == 2 and good["message_version"]["hash"] != c["message_version"]["hash"]
    assert client.put(f"{url}/{c['id']}", json={"content": {"body": "x {{ optout }}"}, "version": 1},
                      headers=org.headers()).status_code == 409
    dup = client.post(url, json={"channel": "sms", "content": {"body": "Hey {{ optout }}"}}, headers=org.headers())
    assert dup.status_code == 409
    assert client.delete(f"{url}/{c['id']}", headers=org.headers()).status_code == 204
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["creatives"] == []


def test_coupon_tags_wait_for_the_incentive_until_submit(client, org):
    m = message(client, org)
    body = {"body": "Code {{ coupon.code }} {{ optout }}"}
    ok(client.post(f"{API}/messages/{m['id']}/creatives", json={"channel": "sms", "content": body},
                   headers=org.headers()), 201)
