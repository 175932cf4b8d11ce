"""Shared helpers for the message-flow tests (no tests here): a campaign, a message ready to submit, groups
and dry runs written straight to the tables (the audience and dry-run endpoints belong to other modules)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from service.storage.db import transaction
from service.storage.tables import AudienceGroup, MessageVersion, Run, utcnow

API = "/api/v1"
SMS = {"body": "Summer sale: {{ vars.discount }} off everything until Sunday. {{ optout }}"}
PERSONALIZATION = """\
ruleset: sale-personalization
kind: personalization
hit_policy: first
rules:
  - id: gold
    priority: 10
    when: {field: customer.tier, in: [gold, platinum]}
    then: {variant: gold, vars: {discount: "20%"}}
  - id: default
    priority: 1000
    when: {always: true}
    then: {variant: default, vars: {discount: "10%"}}
tests:
  - name: gold customer
    given: {customer: {tier: gold}}
    expect: {fired: [gold], variant: gold}
  - name: anyone else
    given: {customer: {tier: silver}}
    expect: {fired: [default], variant: default}
"""


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    """The JSON body of a response that must have ``status``."""
    assert response.status_code == status, response.text
    return response.json()


def make_campaign(client: Any, org: Any, name: str = "Summer", **window: str) -> dict[str, Any]:
    """A campaign (June to December 2026 unless told)."""
    body = {"name": name, "starts": window.get("starts", "2026-06-01"), "ends": window.get("ends", "2026-12-31")}
    return ok(client.post(f"{API}/campaigns", json=body, headers=org.headers()), 201)


def make_group(engine: Engine, org: Any, name: str = "everyone") -> int:
    """An audience group of the org, written to its table."""
    with transaction(engine) as s:
        g = AudienceGroup(org_id=org.org_id, name=name, kind="filter",
                          definition={"filter": {"field": "customer.tier", "exists": True}},
                          created_by=org.user_ids["marketer"])
        s.add(g)
        s.flush()
        assert g.id is not None
        return g.id


def upload_ruleset(client: Any, org: Any, text: str = PERSONALIZATION) -> dict[str, Any]:
    """Upload a ruleset as YAML."""
    r = client.post(f"{API}/rulesets", content=text.encode(), headers=org.headers(**{"Content-Type": "application/yaml"}))
    assert r.status_code in (200, 201), r.text
    return r.json()


def ready_message(client: Any, engine: Engine, org: Any, title: str = "Sale") -> dict[str, Any]:
    """A message that passes every submit check: personalization rules, an SMS creative, an audience, a
    schedule inside the campaign window and an SMS sender."""
    campaign = make_campaign(client, org, name=f"Campaign of {title}")
    upload_ruleset(client, org)
    m = ok(client.post(f"{API}/campaigns/{campaign['id']}/messages",
                       json={"title": title, "strategy": ["personalization"], "channels": ["sms"]},
                       headers=org.headers()), 201)
    url = f"{API}/messages/{m['id']}"
    ok(client.put(f"{url}/rules", json={"personalization": "sale-personalization"}, headers=org.headers()))
    ok(client.post(f"{url}/creatives", json={"channel": "sms", "content": SMS}, headers=org.headers()), 201)
    ok(client.put(f"{url}/audience", json={"include": [make_group(engine, org, f"group of {title}")]},
                  headers=org.headers()))
    ok(client.put(f"{url}/schedule", json={"kind": "at", "at": "2026-07-04T19:00:00+05:30"}, headers=org.headers()))
    ok(client.put(f"{url}/delivery", json={"senders": {"sms": {"sender_id": "HERALD"}}}, headers=org.headers()))
    return ok(client.get(url, headers=org.headers()))


def insert_dry_run(engine: Engine, org: Any, message_id: int, version_hash: str) -> int:
    """A dry run of the message's version with this hash, as the dry-run endpoint would record it."""
    with transaction(engine) as s:
        from sqlmodel import select

        v = s.exec(select(MessageVersion).where(MessageVersion.message_id == message_id,
                                                MessageVersion.hash == version_hash)).first()
        assert v is not None and v.id is not None
        run = Run(org_id=org.org_id, message_id=message_id, version_id=v.id, version_hash=version_hash, at=utcnow(),
                  audience="stored", summary={"recipients": 3, "included": 2}, summary_hash="s" * 64,
                  created_by=org.user_ids["marketer"])
        s.add(run)
        s.flush()
        assert run.id is not None
        return run.id
