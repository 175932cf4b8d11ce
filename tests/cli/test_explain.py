"""``herald explain``: why one recipient got its decision, rule by rule and condition by condition."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from engine import Customer, EvaluationError
from engine.explain import blocking, explain, explain_condition
from engine.rulefiles.ir import All, Cmp, Not
from service.cli import app
from tests.conftest import EXAMPLES, RULES

runner = CliRunner()
MESSAGE = str(EXAMPLES / "summer-sale.message.yaml")
AUDIENCE = str(EXAMPLES / "audience.csv")
AT = "2026-07-04T13:30:00+00:00"  # a Saturday; 21:30 in Singapore


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def explained(customer: str, *extra: str) -> dict:
    result = run("explain", "-m", MESSAGE, "-a", AUDIENCE, "--customer", customer, "--at", AT, "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_table_shows_each_condition_with_the_fact_seen_and_why_the_nearest_rule_did_not_fire():
    # c0004: silver tier, likes shoes and electronics, Asia/Singapore, no e-mail address
    result = run("explain", "-m", MESSAGE, "-a", AUDIENCE, "--customer", "c0004", "--at", AT)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "customer c0004 (zone Asia/Singapore); now 2026-07-04T21:30:00+08:00 (Asia/Singapore) = 2026-07-04T13:30:00+00:00 UTC" in text
    assert "no_match gold-electronics-evening (priority 10)" in text and "← nearest miss" in text
    assert 'false  customer.tier in ["gold", "platinum"]  (seen: "silver")' in text
    assert "true   time.local_hour between [18, 22]  (seen: 21)" in text
    assert "fired    weekend-fashion (priority 30)" in text
    assert "matched  default (priority 1000)" in text  # true, but the first hit already won
    assert "email      dropped by channel_priority: contact_unavailable" in text
    assert "sms        chosen" in text
    assert "send at:          2026-07-04T21:30:00+08:00 = 2026-07-04T13:30:00+00:00 UTC" in text


def test_json_gives_every_rule_of_every_ruleset_with_operator_operand_value_and_outcome():
    data = explained("c0004")
    assert [rs["kind"] for rs in data["rulesets"]] == ["eligibility", "personalization", "channel_priority"]
    personalization = data["rulesets"][1]
    assert personalization["fired"] == ["weekend-fashion"] and personalization["nearest"] == "gold-electronics-evening"
    assert [r["status"] for r in personalization["rules"]] == ["no_match", "no_match", "fired", "matched"]
    tier = personalization["rules"][0]["condition"]["items"][0]
    assert tier == {"kind": "cmp", "outcome": False, "field": "customer.tier", "op": "in",
                    "operand": ["gold", "platinum"], "seen": "silver", "missing": False}
    assert personalization["rules"][0]["blocking"] == [tier]
    fraud = data["rulesets"][0]["rules"][0]["condition"]
    assert fraud["field"] == "customer.fraud_score" and fraud["seen"] == 0.661 and fraud["outcome"] is False
    assert data["channels"] == [
        {"channel": "sms", "outcome": "chosen", "step": None, "why": None, "detail": {}},
        {"channel": "email", "outcome": "dropped", "step": "channel_priority", "why": "contact_unavailable", "detail": {"reason": "no email"}},
    ]
    assert data["at"] == {"local": "2026-07-04T21:30:00+08:00", "utc": "2026-07-04T13:30:00+00:00"}
    assert data["send_time"]["send_at"] == {"local": "2026-07-04T21:30:00+08:00", "utc": "2026-07-04T13:30:00+00:00"}
    assert data["decision"]["channel"] == "sms" and data["decision"]["variant"] == "fashion"


def test_a_missing_fact_is_shown_as_missing():
    data = explained("c0002")  # c0002 has no tier
    tier = data["rulesets"][1]["rules"][1]["condition"]
    assert tier == {"kind": "cmp", "outcome": False, "field": "customer.tier", "op": "in",
                    "operand": ["gold", "platinum"], "seen": None, "missing": True}
    text = run("explain", "-m", MESSAGE, "-a", AUDIENCE, "--customer", "c0002", "--at", AT).stdout
    assert 'false  customer.tier in ["gold", "platinum"]  (seen: missing)' in text


def test_rulesets_after_an_exclusion_are_explained_and_marked_not_reached():
    data = explained("c0016")  # excluded as fraud_risk by the eligibility rules
    assert data["decision"]["excluded_reason"] == "fraud_risk"
    eligibility, personalization, channels = data["rulesets"]
    assert eligibility["reached"] and eligibility["fired"] == ["high-fraud-score"]
    assert not personalization["reached"] and not channels["reached"]
    assert any(r["status"] == "fired" for r in personalization["rules"])  # what it would have picked
    assert data["channels"] == [] and data["send_time"]["send_at"] is None
    assert data["send_time"]["note"] == "no send: excluded (fraud_risk)"


def test_an_unknown_customer_id_exits_2_naming_the_audience_and_the_id():
    result = run("explain", "-m", MESSAGE, "-a", AUDIENCE, "--customer", "c9999", "--at", AT)
    assert result.exit_code == 2
    assert f"{AUDIENCE}: no customer with id 'c9999' among its 200 customers" in result.stderr


def test_quiet_hours_deferral_and_local_send_time_are_shown_in_the_zone_and_utc(tmp_path):
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    shutil.copy(RULES / "fields.yaml", tmp_path / "fields.yaml")
    message = tmp_path / "summer-sale.message.yaml"
    message.write_text(message.read_text().replace(
        "  at: 2026-07-04T13:30:00+00:00   # 19:00 in Kolkata: the evening variant\n",
        "  at: 2026-07-04T13:30:00+00:00\n  local_time: \"22:00\"\n  quiet_hours: [\"21:00\", \"09:00\"]\n"))
    result = run("explain", "-m", str(message), "-a", str(tmp_path / "audience.csv"), "--customer", "c0004",
                 "--at", "2026-06-30T00:00:00+00:00", "--format", "json")
    assert result.exit_code == 0, result.output
    st = json.loads(result.stdout)["send_time"]
    assert st["local_time"] == "22:00" and st["quiet_hours"] == ["21:00", "09:00"]
    assert st["local_send_time"] == {"local": "2026-07-04T22:00:00+08:00", "utc": "2026-07-04T14:00:00+00:00"}
    assert st["deferrals"][0]["to"] == {"local": "2026-07-05T09:00:00+08:00", "utc": "2026-07-05T01:00:00+00:00"}
    assert st["send_at"] == st["deferrals"][0]["to"]
    table = run("explain", "-m", str(message), "-a", str(tmp_path / "audience.csv"), "--customer", "c0004",
                "--at", "2026-06-30T00:00:00+00:00")
    assert ("deferred by quiet_hours (window 21:00–09:00): 2026-07-04T22:00:00+08:00 = 2026-07-04T14:00:00+00:00 UTC"
            " → 2026-07-05T09:00:00+08:00 = 2026-07-05T01:00:00+00:00 UTC") in table.stdout


def test_explain_json_can_be_written_to_a_file(tmp_path):
    target = tmp_path / "why.json"
    result = run("explain", "-m", MESSAGE, "-a", AUDIENCE, "--customer", "c0004", "--at", AT, "--format", "json",
                 "--output", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(target.read_text())["customer"] == "c0004"


# --- the engine part (engine/explain.py) --------------------------------------------------------------------


def test_a_not_that_fails_blocks_as_a_whole_and_an_all_lists_only_its_false_parts():
    facts = {"customer.tier": "gold", "customer.points": 5}
    node = explain_condition(All((Not(Cmp("customer.tier", "eq", "gold")), Cmp("customer.points", "gte", 1),
                                  Cmp("customer.region", "eq", "north"))), facts)
    assert node.outcome is False
    assert [(b.kind, b.field) for b in blocking(node)] == [("not", None), ("cmp", "customer.region")]
    region = node.items[2]
    assert region.missing and region.seen is None and region.outcome is False
    assert node.items[1].outcome is True and node.items[1].seen == 5


def test_an_evaluator_that_disagrees_with_the_rule_semantics_is_an_error_not_a_wrong_explanation(herald):
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")

    class Wrong:
        name = "wrong"

        def fired(self, ruleset, facts):
            return (ruleset.rules[0].id,)

    with pytest.raises(EvaluationError, match="evaluator bug"):
        explain(msg, herald.registry, Customer("x", {"tier": "silver"}), at=datetime(2026, 7, 4, 13, 30, tzinfo=UTC),
                evaluator=Wrong())


@pytest.mark.parametrize("evaluator", ["compiled", "reference", "durable", "columnar"])
def test_every_evaluator_gives_the_same_explanation(evaluator):
    assert explained("c0004", "--evaluator", evaluator) == explained("c0004")
