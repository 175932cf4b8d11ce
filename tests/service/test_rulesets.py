"""Rulesets over HTTP: checked as rule files, tests run at upload, content-hash versions, validate without
saving, and problems at line:column of the upload."""

from __future__ import annotations

import json

import yaml

from tests.service.test_messages_support import API, PERSONALIZATION, ok, upload_ruleset

YAML = {"Content-Type": "application/yaml"}


def post(client, org, text, path="/rulesets", **headers):
    return client.post(f"{API}{path}", content=text.encode(), headers=org.headers(**(headers or YAML)))


def test_an_upload_runs_its_tests_and_is_stored_under_its_content_hash(client, org):
    first = ok(post(client, org, PERSONALIZATION), 201)
    assert first["created"] is True and first["kind"] == "personalization" and len(first["version"]) == 12
    assert first["tests"]["passed"] == 2 and first["tests"]["failed"] == 0
    same = ok(post(client, org, PERSONALIZATION.replace("hit_policy: first", "hit_policy: first\ndescription: x")))
    assert same["created"] is False and same["version"] == first["version"]  # prose is not a new version
    changed = ok(post(client, org, PERSONALIZATION.replace('"20%"', '"25%"')), 201)
    assert changed["version"] != first["version"]
    versions = ok(client.get(f"{API}/rulesets/sale-personalization/versions", headers=org.headers()))["items"]
    assert [v["version"] for v in versions] == [changed["version"], first["version"]]
    one = ok(client.get(f"{API}/rulesets/sale-personalization/versions/{first['version']}", headers=org.headers()))
    assert one["source"] == PERSONALIZATION
    listed = ok(client.get(f"{API}/rulesets", headers=org.headers("approver")))["items"]
    assert [(r["name"], r["version"], r["versions"]) for r in listed] == [
        ("sale-personalization", changed["version"], 2)]


def test_json_is_accepted_and_gives_the_same_version(client, org):
    first = upload_ruleset(client, org)
    as_json = json.dumps(yaml.safe_load(PERSONALIZATION))
    again = ok(post(client, org, as_json, **{"Content-Type": "application/json"}))
    assert again["version"] == first["version"] and again["created"] is False


def test_a_failing_test_is_422_at_its_line_and_nothing_is_stored(client, org):
    broken = PERSONALIZATION.replace("expect: {fired: [gold], variant: gold}", "expect: {fired: [gold], variant: silver}")
    r = post(client, org, broken)
    assert r.status_code == 422
    [item] = r.json()["errors"]
    line = broken.splitlines().index("  - name: gold customer") + 1
    assert item["code"] == "test_failed" and item["path"] == f"ruleset.yaml:{line}:5"
    assert "expected variant 'silver', got 'gold'" in item["message"]
    assert ok(client.get(f"{API}/rulesets", headers=org.headers()))["items"] == []


def test_load_errors_are_every_problem_at_line_and_column(client, org):
    broken = PERSONALIZATION.replace("field: customer.tier", "field: customer.shoe_size").replace("tier: silver", "size: 9")
    r = post(client, org, broken)
    assert r.status_code == 422
    paths = [e["path"] for e in r.json()["errors"]]
    assert len(paths) >= 2 and all(p.startswith("ruleset.yaml:") and p.count(":") == 2 for p in paths)
    syntax = post(client, org, "ruleset: [unclosed")
    assert syntax.status_code == 422 and syntax.json()["errors"][0]["code"] == "syntax"
    assert syntax.json()["errors"][0]["path"].startswith("ruleset.yaml:")
    assert post(client, org, "x", **{"Content-Type": "image/png"}).status_code == 415


def test_validate_checks_without_saving(client, org):
    r = ok(post(client, org, PERSONALIZATION, path="/rulesets/validate"))
    assert r["valid"] is True and r["tests"]["passed"] == 2
    assert ok(client.get(f"{API}/rulesets", headers=org.headers()))["items"] == []
    bad = post(client, org, PERSONALIZATION.replace("kind: personalization", "kind: astrology"),
               path="/rulesets/validate")
    assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "unknown_kind"


def test_a_new_version_keeps_its_kind_and_approvers_cannot_upload(client, org):
    upload_ruleset(client, org)
    other = PERSONALIZATION.replace("kind: personalization", "kind: eligibility")
    assert post(client, org, other).status_code in (409, 422)
    assert post(client, org, PERSONALIZATION, **{**YAML}).status_code == 200
    r = client.post(f"{API}/rulesets", content=PERSONALIZATION.encode(), headers=org.headers("approver", **YAML))
    assert r.status_code == 403
    assert client.get(f"{API}/rulesets/nope/versions", headers=org.headers()).status_code == 404
