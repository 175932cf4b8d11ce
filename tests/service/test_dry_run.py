"""Dry runs of a stored message over HTTP: the run and its summary hash are stored, decisions page and stream,
explain agrees with the decision, diff counts what changes between versions, and another org sees none of it.

The stored message and audience come from the messages and audience repositories (built elsewhere); here
``runs.sources`` stands in for them, honestly: a version row holds the sample message's data and its rule files
(loaded through the engine as the service loads any message), and the stored audience is the sample audience
file read into the same frame the repositories give. The decisions compared against are the engine's own.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime
from typing import Any

import pytest
from sqlmodel import Session, func, select

from engine.columnar import read_frame
from engine.columnar.decisions import customer_of
from engine.runtime import Herald
from service.http.adhoc import InlineRulesets
from service.storage import runs
from service.storage.tables import Campaign, MessageRow, MessageVersion, Run, RunDecision
from tests.service.test_evaluate import AT, AUDIENCE_FILE, MESSAGE_FILE, sample_message, sample_rulesets


class SampleSources(runs.StoredSources):
    """Versions as stored rows (document: ``engine`` message data, ``rulesets`` by reference, ``audience``:
    ``"sample"``); the audience is the sample file; customers by id are its rows."""

    def current_version(self, session, message, user_id):
        return session.exec(select(MessageVersion).where(MessageVersion.message_id == message.id)
                            .order_by(MessageVersion.number.desc())).first()  # type: ignore[union-attr]

    def load(self, herald, session, org_id, version):
        fresh = Herald(herald.registry, herald.catalogue)
        return fresh.load_message_data(version.document["engine"],
                                       resolver=InlineRulesets(herald, version.document["rulesets"]))

    def audience(self, engine, org_id, herald, version):
        assert runs.audience_of(version) == "sample"
        return read_frame(AUDIENCE_FILE, herald.catalogue, channels=herald.registry.channels).frame

    def customers(self, engine, org_id, herald, external_ids):
        frame = read_frame(AUDIENCE_FILE, herald.catalogue, channels=herald.registry.channels).frame
        return frame.filter(frame.get_column("customer.id").is_in(list(external_ids)))


@pytest.fixture(autouse=True)
def sample_sources(monkeypatch):
    monkeypatch.setattr(runs, "sources", SampleSources())


def add_version(db_engine, org, message_id: int, number: int, engine_data: dict[str, Any]) -> None:
    with Session(db_engine) as s:
        s.add(MessageVersion(org_id=org.org_id, message_id=message_id, number=number, hash=f"sha256:v{number}",
                             document={"engine": engine_data, "rulesets": sample_rulesets(), "audience": "sample"},
                             created_by=org.user_ids["marketer"]))
        s.commit()


def stored_message(db_engine, org, data: dict[str, Any] | None = None) -> int:
    """A message of ``org`` with version 1 holding the sample message's data."""
    with Session(db_engine) as s:
        campaign = Campaign(org_id=org.org_id, name="Summer")
        s.add(campaign)
        s.flush()
        assert campaign.id is not None
        message = MessageRow(org_id=org.org_id, campaign_id=campaign.id, title="Summer sale",
                             author_id=org.user_ids["marketer"])
        s.add(message)
        s.commit()
        assert message.id is not None
        message_id = message.id
    add_version(db_engine, org, message_id, 1, data or sample_message())
    return message_id


def engine_run(herald, data: dict[str, Any] | None = None):
    message = Herald(herald.registry, herald.catalogue).load_message_data(
        data or sample_message(), resolver=InlineRulesets(herald, sample_rulesets()))
    frame = read_frame(AUDIENCE_FILE, herald.catalogue, channels=herald.registry.channels).frame
    return herald.evaluate(message, frame, at=datetime.fromisoformat(AT))


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_a_dry_run_stores_the_run_with_its_summary_hash_and_every_decision(client, org, db_engine, herald):
    mid = stored_message(db_engine, org)
    r = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT, "limit": 10}, headers=org.headers("approver"))
    assert r.status_code == 201, r.text
    got = r.json()
    run = engine_run(herald)
    decisions = [d.as_dict() for d in run]
    assert got["summary"] == plain(run.summary().as_dict())
    assert got["decisions"] == plain(decisions[:10]) and got["next_cursor"]
    assert got["version_hash"] == "sha256:v1" and got["audience"] == "stored"
    assert got["summary_hash"] == runs.summary_hash(got["summary"])
    with Session(db_engine) as s:
        row = s.get(Run, got["run_id"])
        assert row is not None and row.summary_hash == got["summary_hash"] and row.summary == got["summary"]
        assert row.version_hash == "sha256:v1" and row.created_by == org.user_ids["approver"]
        stored = s.exec(select(func.count()).select_from(RunDecision).where(RunDecision.run_id == row.id)).one()
        excluded = s.exec(select(func.count()).select_from(RunDecision).where(
            RunDecision.run_id == row.id, RunDecision.included == False)).one()  # noqa: E712
    assert stored == 200 and excluded == got["summary"]["excluded"]
    again = client.get(f"/api/v1/runs/{got['run_id']}", headers=org.headers())
    assert again.status_code == 200 and again.json()["summary_hash"] == got["summary_hash"]


def test_paging_walks_every_decision_exactly_once(client, org, db_engine, herald):
    mid = stored_message(db_engine, org)
    first = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT, "limit": 30}, headers=org.headers()).json()
    seen = list(first["decisions"])
    cursor = first["next_cursor"]
    pages = 0
    while cursor:
        page = client.get(f"/api/v1/runs/{first['run_id']}/decisions", params={"cursor": cursor, "limit": 30},
                          headers=org.headers()).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        pages += 1
    assert pages == 6
    assert seen == plain([d.as_dict() for d in engine_run(herald)])
    whole = client.get(f"/api/v1/runs/{first['run_id']}/decisions", params={"limit": 1000}, headers=org.headers())
    assert whole.json()["items"] == seen and whole.json()["next_cursor"] is None
    bad = client.get(f"/api/v1/runs/{first['run_id']}/decisions", params={"cursor": "nonsense!"}, headers=org.headers())
    assert bad.status_code == 422


def test_ndjson_streams_every_decision_then_the_summary_and_stores_the_run(client, org, db_engine, herald):
    mid = stored_message(db_engine, org)
    r = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT},
                    headers=org.headers(Accept="application/x-ndjson"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson"), r.text[:300]
    lines = r.text.splitlines()
    run = engine_run(herald)
    expected = "".join(run.ndjson()).splitlines()
    assert lines[:-1] == expected and len(expected) == 200
    last = json.loads(lines[-1])
    assert last["summary"] == plain(run.summary().as_dict())
    with Session(db_engine) as s:
        row = s.get(Run, last["run_id"])
        assert row is not None and row.summary_hash == last["summary_hash"] == runs.summary_hash(last["summary"])


def test_summary_only_stores_no_decisions(client, org, db_engine):
    mid = stored_message(db_engine, org)
    got = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT, "summary_only": True},
                      headers=org.headers()).json()
    assert got["decisions"] == [] and got["next_cursor"] is None and got["summary"]["total"] == 200
    page = client.get(f"/api/v1/runs/{got['run_id']}/decisions", headers=org.headers()).json()
    assert page == {"items": [], "next_cursor": None}


def test_given_customer_ids_or_inline_customers_are_evaluated_in_their_order(client, org, db_engine, herald):
    mid = stored_message(db_engine, org)
    by_id = {d.customer: d.as_dict() for d in engine_run(herald)}
    got = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT, "customer_ids": ["c0007", "c0002"]},
                      headers=org.headers()).json()
    assert got["audience"] == "ids" and [d["customer"] for d in got["decisions"]] == ["c0007", "c0002"]
    assert got["decisions"][1]["variant"] == by_id["c0002"]["variant"]
    r = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT, "customer_ids": ["c0002", "nobody"]},
                    headers=org.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/customer_ids/1"
    inline = client.post(f"/api/v1/messages/{mid}/dry-run",
                         json={"at": AT, "customers": [{"id": "x1", "tier": "gold", "phone": "+919881924865",
                                                        "subscription": {"sms": "subscribed"}}]},
                         headers=org.headers()).json()
    assert inline["audience"] == "inline" and inline["summary"]["total"] == 1
    both = client.post(f"/api/v1/messages/{mid}/dry-run", json={"customer_ids": ["c0002"], "customers": [{"id": "x"}]},
                       headers=org.headers())
    assert both.status_code == 422


def test_explain_gives_the_same_verdict_as_the_decision(client, org, db_engine, herald):
    mid = stored_message(db_engine, org)
    decisions = [d.as_dict() for d in engine_run(herald)]
    for d in (decisions[0], decisions[1], next(x for x in decisions if not x["included"])):
        r = client.get(f"/api/v1/messages/{mid}/explain", params={"customer": d["customer"], "at": AT},
                       headers=org.headers())
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["customer"] == d["customer"] and got["in_audience"] and got["version_hash"] == "sha256:v1"
        verdict = {k: got["decision"][k] for k in ("included", "excluded_reason", "variant", "channel", "fallbacks")}
        assert verdict == {k: d[k] for k in verdict}
        assert {rs["kind"] for rs in got["rulesets"]} == {"eligibility", "personalization", "channel_priority"}
    missing = client.get(f"/api/v1/messages/{mid}/explain", params={"customer": "nobody", "at": AT},
                         headers=org.headers())
    assert missing.status_code == 404


def test_explain_counts_the_coupons_the_org_ledger_holds_as_the_dry_run_does(client, org, other_org, db_engine,
                                                                             herald):
    from service.storage.ledger import DbLedgerStore

    data = sample_message()
    data["incentive"]["settings"] = {"source": "list", "codes": ["A1", "B2"], "expiry": {"days": 14}}
    mid = stored_message(db_engine, org, data)
    loaded = Herald(herald.registry, herald.catalogue).load_message_data(
        data, resolver=InlineRulesets(herald, sample_rulesets()))
    first, *others = [d.customer for d in engine_run(herald, data) if d.included]
    # two other customers of the audience already hold the two codes in the org's ledger: the series is full
    frame = read_frame(AUDIENCE_FILE, herald.catalogue, channels=herald.registry.channels).frame
    model = customer_of(frame.filter(frame.get_column("customer.id") == others[0]).row(0, named=True))
    people = [dataclasses.replace(model, id=f"z{n}") for n in range(2)]  # two more like one who gets a code
    real = list(herald.evaluate(loaded, people, at=datetime.fromisoformat(AT), preview=False,
                                ledger=DbLedgerStore(db_engine, org.org_id)))
    assert [d.incentive["code"] for d in real if d.incentive] == ["A1", "B2"], [(d.customer, d.excluded_reason) for d in real]

    alone = customer_of(frame.filter(frame.get_column("customer.id") == first).row(0, named=True))
    want = next(iter(herald.evaluate(loaded, [alone], at=datetime.fromisoformat(AT),
                                     ledger=DbLedgerStore(db_engine, org.org_id)))).as_dict()
    r = client.get(f"/api/v1/messages/{mid}/explain", params={"customer": first, "at": AT},
                   headers=org.headers())
    assert r.status_code == 200, r.text
    got = r.json()["decision"]
    assert (got["included"], got["excluded_reason"]) == (False, "incentive_unavailable")
    assert (want["included"], want["excluded_reason"]) == (False, "incentive_unavailable")
    # another org's ledger is its own: the same explain there is not refused for this org's codes
    other = stored_message(db_engine, other_org, data)
    there = client.get(f"/api/v1/messages/{other}/explain", params={"customer": first, "at": AT},
                       headers=other_org.headers()).json()["decision"]
    assert there["included"] and there["incentive"]["code"]


def test_diff_counts_the_recipients_whose_decision_changes(client, org, db_engine, herald):
    changed = copy.deepcopy(sample_message())
    changed["delivery"]["send_to_dnd"] = True
    changed["creatives"] = [c for c in changed["creatives"] if c["channel"] != "email"]
    mid = stored_message(db_engine, org)
    add_version(db_engine, org, mid, 2, changed)
    r = client.post(f"/api/v1/messages/{mid}/diff", json={"from_version": 1, "to_version": 2, "at": AT, "samples": 3},
                    headers=org.headers("approver"))
    assert r.status_code == 200, r.text
    got = r.json()
    old = {d.customer: d for d in engine_run(herald)}
    new = {d.customer: d for d in engine_run(herald, changed)}
    expect = {
        "inclusion": sum(old[c].included != new[c].included for c in old),
        "variant": sum(old[c].included and new[c].included and old[c].variant != new[c].variant for c in old),
        "channel": sum(old[c].included and new[c].included and old[c].channel != new[c].channel for c in old),
        "incentive": sum(json.dumps(old[c].incentive, default=str) != json.dumps(new[c].incentive, default=str)
                         for c in old),
    }
    assert {k: got["changed"][k] for k in expect} == expect
    assert expect["inclusion"] > 0 and expect["channel"] > 0
    assert got["total"] == 200 and got["from"]["version"] == 1 and got["to"]["version"] == 2
    sample = got["samples"]["inclusion"]
    assert 0 < len(sample) <= 3
    for s in sample:
        assert s["from"]["included"] == old[s["customer"]].included and s["to"]["included"] == new[s["customer"]].included
    no_base = client.post(f"/api/v1/messages/{mid}/diff", json={"at": AT}, headers=org.headers())
    assert no_base.status_code == 422 and no_base.json()["errors"][0]["path"] == "/from_version"
    unknown = client.post(f"/api/v1/messages/{mid}/diff", json={"from_version": 9, "at": AT}, headers=org.headers())
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["path"] == "/from_version"


def test_another_org_cannot_dry_run_explain_diff_or_read_the_runs(client, org, other_org, db_engine):
    mid = stored_message(db_engine, org)
    run = client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT}, headers=org.headers()).json()
    theirs = other_org.headers()
    assert client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT}, headers=theirs).status_code == 404
    assert client.post(f"/api/v1/messages/{mid}/dry-run", json={"at": AT},
                       headers=other_org.headers(Accept="application/x-ndjson")).status_code == 404
    assert client.get(f"/api/v1/messages/{mid}/explain", params={"customer": "c0001", "at": AT},
                      headers=theirs).status_code == 404
    assert client.post(f"/api/v1/messages/{mid}/diff", json={"from_version": 1, "to_version": 1},
                       headers=theirs).status_code == 404
    assert client.get(f"/api/v1/runs/{run['run_id']}", headers=theirs).status_code == 404
    assert client.get(f"/api/v1/runs/{run['run_id']}/decisions", headers=theirs).status_code == 404
    with Session(db_engine) as s:
        assert s.exec(select(func.count()).select_from(Run).where(Run.org_id == other_org.org_id)).one() == 0


def test_a_missing_message_is_404_and_a_message_file_mismatch_is_not_hidden(client, org):
    assert client.post("/api/v1/messages/987654321/dry-run", json={"at": AT}, headers=org.headers()).status_code == 404
    assert MESSAGE_FILE.exists()
