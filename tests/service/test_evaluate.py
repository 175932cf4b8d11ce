"""POST /api/v1/evaluate: an ad-hoc message for inline customers gives the engine's and the CLI's decisions,
nothing stored; bad input is 422 pointing into the body; the size bounds hold."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from engine.columnar import read_frame
from service.cli import app as cli_app
from service.http.routes.evaluation import MAX_CUSTOMERS, PREPARED
from service.storage.db import transaction
from service.storage.keys import issue_key
from service.storage.tables import Ledger, Run, User

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "rules" / "examples"
MESSAGE_FILE = EXAMPLES / "summer-sale.message.yaml"
AUDIENCE_FILE = EXAMPLES / "audience.csv"
AT = "2026-07-04T13:30:00+00:00"


def as_json(data: Any) -> Any:
    """YAML data as a JSON body carries it (dates and times as ISO text)."""
    return json.loads(json.dumps(data, default=lambda v: v.isoformat()))


def sample_message() -> dict[str, Any]:
    """The sample message's data (its rule files named as in the file)."""
    return as_json(yaml.safe_load(MESSAGE_FILE.read_text()))


def sample_rulesets() -> dict[str, Any]:
    """The sample message's rule files, by the references the message writes (as data)."""
    return {ref: as_json(yaml.safe_load((EXAMPLES / ref).read_text())) for ref in sample_message()["rules"].values()}


def sample_customers() -> list[dict[str, Any]]:
    """The sample audience as JSON customers: each CSV row's cells, empty ones left out."""
    with AUDIENCE_FILE.open(newline="") as fh:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]


def body(customers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"message": sample_message(), "rulesets": sample_rulesets(), "customers": customers, "at": AT, **extra}


def engine_answer(herald, customers_frame=None) -> dict[str, Any]:
    """What Herald.evaluate gives for the sample message file over the sample audience file."""
    message = herald.with_fields_for(MESSAGE_FILE).load_message(MESSAGE_FILE)
    frame = customers_frame if customers_frame is not None else read_frame(
        AUDIENCE_FILE, herald.catalogue, channels=herald.registry.channels).frame
    run = herald.evaluate(message, frame, at=datetime.fromisoformat(AT))
    decisions = [d.as_dict() for d in run]
    return {"decisions": decisions, "summary": run.summary().as_dict()}


def test_evaluate_equals_the_engine_and_the_cli_for_the_sample_audience(client, org, herald):
    r = client.post("/api/v1/evaluate", json=body(sample_customers()), headers=org.headers("service"))
    assert r.status_code == 200, r.text
    got = r.json()
    assert len(got["decisions"]) == 200
    assert got == json.loads(json.dumps(engine_answer(herald)))
    cli = CliRunner().invoke(cli_app, ["evaluate", "-m", str(MESSAGE_FILE), "-a", str(AUDIENCE_FILE), "--at", AT,
                                       "--format", "json"], catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    assert got == json.loads(cli.stdout)


def test_one_recipient_at_a_time_gives_the_same_decision_as_the_whole_run(client, org, herald):
    customers = sample_customers()
    whole = engine_answer(herald)["decisions"]
    for i in (0, 1, 2, 7, 42):
        r = client.post("/api/v1/evaluate", json=body([customers[i]]), headers=org.headers("service"))
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["decisions"] == [json.loads(json.dumps(whole[i]))]
        one = engine_answer(herald, read_frame(AUDIENCE_FILE, herald.catalogue,
                                               channels=herald.registry.channels).frame.slice(i, 1))
        assert got == json.loads(json.dumps(one))  # the summary of that one recipient too


def test_a_kept_prepared_serves_repeats_and_a_capped_list_is_not_used_up_by_earlier_requests(client, org, herald):
    from engine.messages import FileRulesetResolver
    from engine.runtime import Herald

    message = sample_message()
    message["incentive"]["settings"] = {"source": "list", "codes": ["A1", "B2"], "expiry": {"days": 14}}
    loaded = Herald(herald.registry, herald.catalogue).load_message_data(
        message, resolver=FileRulesetResolver(EXAMPLES, herald.registry, herald.catalogue))
    frame = read_frame(AUDIENCE_FILE, herald.catalogue, channels=herald.registry.channels).frame
    customers = sample_customers()
    hits = PREPARED.hits
    included = 0
    for i in range(12):  # each request is a run of one recipient, however many came before
        alone = [d.as_dict() for d in herald.evaluate(loaded, frame.slice(i, 1), at=datetime.fromisoformat(AT))]
        got = client.post("/api/v1/evaluate", json={**body([customers[i]]), "message": message},
                          headers=org.headers("service")).json()["decisions"]
        assert got == json.loads(json.dumps(alone))
        included += got[0]["included"]
    assert included >= 3  # more than the list's two codes
    assert PREPARED.hits >= hits + 11
    whole = client.post("/api/v1/evaluate", json={**body(customers[:12]), "message": message},
                        headers=org.headers("service")).json()
    reasons = [d["excluded_reason"] for d in whole["decisions"]]
    assert reasons.count("incentive_unavailable") == included - 2  # one run of twelve: two codes to share


def test_a_kept_prepared_found_by_the_message_text_serves_that_text_only(client, org):
    """One recipient's ``Prepared`` is found by the JSON text of the message and its rulesets: two messages
    that differ only inside (the creatives' text) never share one, whichever came first; the same message
    written otherwise gets the same answer; a run of two (never kept) is the reference."""
    headers = {**org.headers("service"), "Content-Type": "application/json"}
    customers = sample_customers()
    a = sample_message()
    b = json.loads(json.dumps(a))
    for creative in b["creatives"]:
        creative["content"] = {k: f"{v} (B)" for k, v in creative["content"].items()}
    rulesets_b = sample_rulesets()
    rulesets_b["personalization.yaml"]["rules"].reverse()  # the same message, other rulesets text

    def post(message: dict[str, Any], who: list[dict[str, Any]], rulesets: dict[str, Any] | None = None,
             **dumps: Any) -> dict[str, Any]:
        raw = json.dumps({**body(who, render=True), "message": message, "rulesets": rulesets or sample_rulesets()},
                         **dumps).encode()
        r = client.post("/api/v1/evaluate", content=raw, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["decisions"][0]

    rendered = 0
    for customer in customers[:6]:
        alone = {name: post(m, [customer, customers[10]]) for name, m in (("a", a), ("b", b))}
        for name, message in (("a", a), ("b", b), ("a", a), ("b", b)):
            got = post(message, [customer])
            assert got == alone[name]
            if got["rendered"]:
                rendered += 1
                assert ("(B)" in json.dumps(got["rendered"])) == (name == "b"), got["rendered"]
        assert post(a, [customer], separators=(",", ":")) == alone["a"]  # other text, same content
        assert post(b, [customer], indent=1) == alone["b"]
        other = post(a, [customer], rulesets_b)
        assert other == post(a, [customer, customers[10]], rulesets_b)
    assert rendered >= 4


def test_a_body_whose_message_text_is_kept_is_still_checked_whole(client, org):
    """A body is refused (or read) as a whole, whether or not its message text has a kept ``Prepared``: a
    bad field beside a warm message is the same 422 as beside a cold one, and of repeated keys the last
    counts, as it does for the rest of the body."""
    headers = {**org.headers("service"), "Content-Type": "application/json"}
    customer = sample_customers()[0]
    warm, cold = sample_message(), sample_message()
    cold["message"]["title"] = "never seen"

    def post(raw: bytes) -> Any:
        return client.post("/api/v1/evaluate", content=raw, headers=headers)

    good = post(json.dumps(body([customer])).encode())
    assert good.status_code == 200
    for extra in ({"explain": "yes"}, {"render": {}}, {"at": [1]}, {"surplus": 1},
                  {"customers": [customer, customer]}, {"customers": [{**customer, "lifetime_value": "lots"}]},
                  {"at": "2026-07-04T13:30:00"}, {"rulesets": {"x" * 501: {}}}):
        answers = [post(json.dumps({**body([customer]), "message": m, **extra}).encode()) for m in (warm, cold)]
        assert answers[0].status_code == answers[1].status_code == 422, answers[0].text
        assert answers[0].content == answers[1].content
    # the message given twice: the last one counts (the first is not even an object)
    twice = b'{"message": [1], ' + json.dumps(body([customer]))[1:].encode()
    assert post(twice).content == good.content
    twice = json.dumps(body([customer]))[:-1].encode() + b', "message": [1]}'
    assert post(twice).json()["errors"] == [{"path": "/message", "code": "invalid",
                                            "message": "Expected `object`, got `array`"}]
    # lenient values the handler takes ("true" for true) are taken with a warm message too
    assert post(json.dumps(body([customer], explain="true")).encode()).json()["decisions"][0]["included"] is not None


def test_nothing_is_stored(client, org, db_engine):
    with Session(db_engine) as s:
        before = (s.exec(select(func.count()).select_from(Run)).one(), s.exec(select(func.count()).select_from(Ledger)).one())
    assert client.post("/api/v1/evaluate", json=body(sample_customers()[:5]), headers=org.headers()).status_code == 200
    with Session(db_engine) as s:
        after = (s.exec(select(func.count()).select_from(Run)).one(), s.exec(select(func.count()).select_from(Ledger)).one())
    assert before == after


def test_a_bad_message_is_422_pointing_at_the_field(client, org):
    message = sample_message()
    message["channels"] = ["sms", "pigeon"]
    message["message"]["type"] = "carrier"
    r = client.post("/api/v1/evaluate", json={**body(sample_customers()[:1]), "message": message},
                    headers=org.headers("service"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    paths = {e["path"] for e in r.json()["errors"]}
    assert "/message/message/type" in paths


def test_a_bad_ruleset_is_422_pointing_into_the_rulesets(client, org):
    rulesets = sample_rulesets()
    rulesets["eligibility.yaml"]["rules"][0]["when"] = {"field": "customer.no_such_field", "eq": 1}
    r = client.post("/api/v1/evaluate", json={**body(sample_customers()[:1]), "rulesets": rulesets},
                    headers=org.headers("service"))
    assert r.status_code == 422, r.text
    paths = [e["path"] for e in r.json()["errors"]]
    assert any(p.startswith("/rulesets/eligibility.yaml/rules/0/when") for p in paths), paths
    missing = {k: v for k, v in sample_rulesets().items() if k != "personalization.yaml"}
    r = client.post("/api/v1/evaluate", json={**body(sample_customers()[:1]), "rulesets": missing},
                    headers=org.headers("service"))
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["/message/rules/personalization"]


def test_bad_customers_are_422_naming_each(client, org):
    customers = sample_customers()[:3]
    customers[1]["lifetime_value"] = "lots"
    customers[2]["id"] = customers[0]["id"]
    r = client.post("/api/v1/evaluate", json=body(customers), headers=org.headers("service"))
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["/customers/1/lifetime_value", "/customers/2/id"]
    r = client.post("/api/v1/evaluate", json=body([{"tier": "gold"}]), headers=org.headers("service"))
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/customers/0/id"


def test_an_instant_without_a_zone_and_a_past_send_are_422(client, org):
    r = client.post("/api/v1/evaluate", json=body(sample_customers()[:1], at="2026-07-04T13:30:00"),
                    headers=org.headers("service"))
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/at"
    r = client.post("/api/v1/evaluate", json=body(sample_customers()[:2], at="2026-08-01T00:00:00+00:00"),
                    headers=org.headers("service"))
    assert r.status_code == 422 and r.json()["errors"]


def test_too_many_customers_or_too_large_a_body_is_refused(client, org):
    many = [{"id": f"c{i}"} for i in range(MAX_CUSTOMERS + 1)]
    r = client.post("/api/v1/evaluate", json=body(many), headers=org.headers("service"))
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/customers"
    huge = [{"id": f"c{i}", "note": "x" * 5000} for i in range(900)]
    r = client.post("/api/v1/evaluate", json=body(huge), headers=org.headers("service"))
    assert r.status_code == 413


def test_without_a_key_401_and_every_role_may_evaluate(client, org):
    assert client.post("/api/v1/evaluate", json=body(sample_customers()[:1])).status_code == 401
    for who in ("marketer", "approver", "admin", "service"):
        assert client.post("/api/v1/evaluate", json=body(sample_customers()[:1]),
                           headers=org.headers(who)).status_code == 200


@pytest.mark.parametrize("n", [200])
def test_single_recipient_latency_is_reported(client, org, n, capsys):
    one = body(sample_customers()[:1])
    headers = org.headers("service")
    client.post("/api/v1/evaluate", json=one, headers=headers)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.post("/api/v1/evaluate", json=one, headers=headers)
        times.append(time.perf_counter() - start)
        assert r.status_code == 200
    times.sort()
    with capsys.disabled():
        print(f"\n/evaluate one recipient via TestClient: p50 {times[n // 2] * 1000:.2f} ms, "
              f"p99 {times[int(n * 0.99)] * 1000:.2f} ms")


def test_one_recipient_sees_the_ledger_as_it_is_at_each_request(client, org, db_engine):
    """Nothing of the ledger is kept between requests (the ``Prepared`` is): a code reserved for the customer
    since the last request is the one shown, and a cap reached since then refuses the next new recipient."""
    from service.storage.ledger import DbLedgerStore

    message = sample_message()
    message["incentive"]["settings"] = {"source": "list", "codes": ["A1", "B2", "C3"], "cap": 2, "expiry": {"days": 14}}
    series, store = ("coupon", message["message"]["id"]), DbLedgerStore(db_engine, org.org_id)

    def decide(customer: dict[str, Any]) -> dict[str, Any]:
        r = client.post("/api/v1/evaluate", json={**body([customer]), "message": message}, headers=org.headers("service"))
        assert r.status_code == 200, r.text
        return r.json()["decisions"][0]

    ana, ben = [c for c in sample_customers()[:20] if decide(c)["included"]][:2]
    sample = decide(ana)["incentive"]
    held = next(code for code in ("A1", "B2", "C3") if code != sample["code"])
    assert sample["preview"] is True
    store.open(series, message["message"]["id"], {"source": "list", "cap": 2, "codes": ["A1", "B2", "C3"]})
    store.reserve(series, (message["message"]["id"], ana["id"]), {}, candidates=[held], cap=2)
    assert decide(ana)["incentive"]["code"] == held  # the code held now, not the preview's pick
    assert decide(ben)["included"]  # one more code fits under the cap
    store.reserve(series, (message["message"]["id"], "someone-else"), {}, candidates=["A1", "B2", "C3"], cap=2)
    refused = decide(ben)
    assert not refused["included"] and refused["excluded_reason"] == "incentive_unavailable"
    assert decide(ana)["incentive"]["code"] == held  # a holder keeps its code at the cap


def test_a_single_decision_reads_postgresql_off_the_event_loop_and_sqlite_on_it(client, org, db_engine, monkeypatch):
    """The single-recipient handler is async: its ledger read may run on the event loop only when it is a local
    SQLite file read; a PostgreSQL read (the network) goes to a worker thread."""
    import asyncio

    from service.storage.ledger import DbLedgerStore

    on_loop: list[bool] = []
    peek = DbLedgerStore.peek

    def watched(self, ledger, holder):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return peek(self, ledger, holder)

    monkeypatch.setattr(DbLedgerStore, "peek", watched)
    for customer in sample_customers()[:3]:
        r = client.post("/api/v1/evaluate", json=body([customer]), headers=org.headers("service"))
        assert r.status_code == 200, r.text
    assert on_loop and set(on_loop) == {db_engine.dialect.name == "sqlite"}


def test_a_caller_without_an_evaluating_role_is_403_before_the_body_is_read(client, org, db_engine):
    """The role check comes first: a caller who may not evaluate learns nothing from a bad body (403, not 400)."""
    with transaction(db_engine) as s:  # no role at all (the API never makes one: stored directly)
        user = User(org_id=org.org_id, name="nobody", roles="")
        s.add(user)
        s.flush()
        _, key = issue_key(s, user)
    headers = {"Authorization": f"Bearer {key}"}
    answers = [client.post("/api/v1/evaluate", json=body(sample_customers()[:1]), headers=headers),
               client.post("/api/v1/evaluate", content=b"{", headers={**headers, "Content-Type": "application/json"})]
    for r in answers:
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "this needs the role marketer or approver or admin or service" in r.json()["detail"]


def test_the_summary_of_one_decision_is_the_summary_of_a_run_of_it():
    from engine.model import Decision
    from service.http.routes.evaluation import summary_of_decisions, summary_of_one

    decisions = [Decision("a", True, None, "v1", "sms"), Decision("b", True, None, None, "email"),
                 Decision("c", True, None, "v2", None), Decision("d", False, "unsubscribed"),
                 Decision("e", False, None), Decision("f", True, None, "v1", "push")]
    for costs in ({"sms": 0.0123456, "email": 0.001}, {"sms": 1, "email": 0}, {}):
        for d in decisions:
            expected = summary_of_decisions([d], costs).as_dict()
            got = summary_of_one(d, costs)
            assert json.dumps(got) == json.dumps(expected), d
