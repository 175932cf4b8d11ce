"""The points strategy: settings, per-recipient amounts, credit once, and the incentive/tag checks end to end."""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from engine import (
    Campaign,
    Creative,
    Customer,
    EvaluationContext,
    FieldSpec,
    IncentiveContext,
    IncentiveSpec,
    Message,
    MessageFileError,
    Schedule,
)
from engine.fields import build_catalogue
from engine.run import evaluate
from engine.validation import validate_message
from plugins.incentives.points import Points

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
CAMPAIGN = Campaign("loyalty-2026", "Loyalty week", date(2026, 7, 1), date(2026, 7, 31))
TIER_RULE = {"by_field": "customer.tier", "amounts": {"gold": 500, "silver": 250}, "default": 100}
SMS = Creative("sms", content={"body": "You earned {{ points.amount }} {{ points.program }} points. {{ optout }}"})


def message(**settings) -> Message:
    return Message("double-points", "Double points", CAMPAIGN, creatives=(SMS,),
                   incentive=IncentiveSpec("points", settings))


def codes(spec):
    return {(i.path, i.code) for i in Points().validate(spec, message(**spec))}


@pytest.mark.parametrize("spec", [
    {"program": "Herald Rewards", "amount": 200},
    {"program": "Herald Rewards", "rule": TIER_RULE, "expiry": {"days": 90}},
    {"program": "Herald Rewards", "amount": 50, "expiry": {"date": "2026-12-31"}},
])
def test_valid_strategies_have_no_issues(spec):
    assert codes(spec) == set()


@pytest.mark.parametrize(("spec", "expected"), [
    ({"amount": 200}, ("program", "required")),
    ({"program": " ", "amount": 200}, ("program", "required")),
    ({"program": "P"}, ("amount", "amount_or_rule")),
    ({"program": "P", "amount": 1, "rule": TIER_RULE}, ("amount", "amount_or_rule")),
    ({"program": "P", "amount": 0}, ("amount", "invalid")),
    ({"program": "P", "amount": 12.5}, ("amount", "invalid")),
    ({"program": "P", "rule": {**TIER_RULE, "by_field": "tier"}}, ("rule.by_field", "invalid")),
    ({"program": "P", "rule": {**TIER_RULE, "amounts": {}}}, ("rule.amounts", "required")),
    ({"program": "P", "rule": {**TIER_RULE, "amounts": {"gold": -5}}}, ("rule.amounts.gold", "invalid")),
    ({"program": "P", "rule": {k: v for k, v in TIER_RULE.items() if k != "default"}}, ("rule.default", "required")),
    ({"program": "P", "amount": 5, "expiry": {"days": 0}}, ("expiry.days", "invalid")),
    ({"program": "P", "amount": 5, "expiry": {"weeks": 2}}, ("expiry", "invalid")),
    ({"program": "P", "amount": 5, "expiry": {"date": "2026-06-01"}}, ("expiry.date", "before_campaign")),
    ({"program": "P", "amount": 5, "expiry": {"date": "soon"}}, ("expiry.date", "invalid")),
    ({"program": "P", "amount": 5, "bonus": 2}, ("bonus", "unknown_key")),
])
def test_each_rule_names_its_field(spec, expected):
    assert expected in codes(spec)


def test_points_by_tier_with_a_default_and_expiry_in_days(registry):
    msg = message(program="Herald Rewards", rule=TIER_RULE, expiry={"days": 90})
    people = [Customer("g", {"tier": "gold", "phone": "+14155550123"}), Customer("s", {"tier": "silver", "phone": "+14155550124"}),
              Customer("b", {"tier": "bronze", "phone": "+14155550125"}), Customer("n", {"phone": "+14155550126"})]
    decisions = evaluate(msg, people, at=AT, registry=registry, render=True)
    assert [d.incentive["amount"] for d in decisions] == [500, 250, 100, 100]
    assert decisions[0].incentive["expires_on"] == "2026-10-02"
    assert decisions[0].rendered["payload"]["text"].startswith("You earned 500 Herald Rewards points.")
    assert registry.incentive("points").reservations(msg.incentive.settings, msg, registry.ledger) == 0  # a preview


def test_points_are_credited_once_and_released_only_before_credit(registry):
    spec = {"program": "Herald Rewards", "amount": 200, "expiry": {"days": 30}}
    msg, points = message(**spec), registry.incentive("points")
    ctx = EvaluationContext(msg, registry, AT, lambda kind, draft: (), preview=False)
    grant = points.reserve(spec, Customer("ana"), ctx, AT)
    assert points.reserve(spec, Customer("ana"), ctx, AT) == grant  # one reservation per customer and message
    first = asyncio.run(points.issue(spec, grant, IncentiveContext(msg, registry.ledger, datetime(2026, 7, 5, tzinfo=UTC))))
    second = asyncio.run(points.issue(spec, grant, IncentiveContext(msg, registry.ledger, datetime(2026, 7, 9, tzinfo=UTC))))
    assert first == second and first["credited_on"] == "2026-07-05" and first["expires_on"] == "2026-08-04"
    points.release(spec, grant, IncentiveContext(msg, registry.ledger, AT))
    assert points.reservations(spec, msg, registry.ledger) == 1
    other = points.reserve(spec, Customer("ben"), ctx, AT)
    points.release(spec, other, IncentiveContext(msg, registry.ledger, AT))
    assert points.reservations(spec, msg, registry.ledger) == 1


# --- incentive tags ⇄ incentive, end to end through a message file ------------------------------------

HEAD = """\
message:
  id: double-points
  title: Double points week
  campaign: {id: loyalty-2026, starts: 2026-07-01, ends: 2026-07-31}
delivery:
  senders:
    sms: {sender_id: HERALD}
"""


def write(tmp_path, body: str):
    path = tmp_path / "points.message.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    return path


def test_a_creative_showing_points_without_an_incentive_is_rejected(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "You earned {{ points.amount }} points. {{ optout }}"}
        """)
    with pytest.raises(MessageFileError) as err:
        herald.load_message(path)
    assert [(p.path, p.code) for p in err.value.problems] == [("creatives[0].content", "incentive_required")]
    assert "points.amount" in str(err.value)


def test_a_points_incentive_nobody_shows_is_a_warning_only(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "Double points all week at Herald stores. {{ optout }}"}
        incentive:
          kind: points
          settings: {program: Herald Rewards, amount: 200}
        """)
    msg = herald.load_message(path)  # loads: a warning is not an error
    found = validate_message(msg, herald.registry, herald.catalogue)
    assert [(i.path, i.code, i.severity) for i in found] == [("incentive", "incentive_not_shown", "warning")]


def test_invalid_points_settings_in_a_file_name_the_setting(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "{{ points.amount }} points for you, {{ customer.tier }}. {{ optout }}"}
        incentive:
          kind: points
          settings: {program: Herald Rewards, rule: {by_field: customer.tier, amounts: {gold: 500}}}
        """)
    with pytest.raises(MessageFileError) as err:
        herald.load_message(path)
    assert [(p.path, p.code) for p in err.value.problems] == [("incentive.settings.rule.default", "required")]


def test_coupon_tags_with_a_points_incentive_are_a_mismatch(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "Code {{ coupon.code }} and {{ points.amount }} points. {{ optout }}"}
        incentive:
          kind: points
          settings: {program: Herald Rewards, amount: 100}
        """)
    with pytest.raises(MessageFileError) as err:
        herald.load_message(path)
    assert [(p.path, p.code) for p in err.value.problems] == [("creatives[0].content", "incentive_mismatch")]


def test_a_valid_points_message_loads_and_evaluates(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "{{ points.amount }} {{ points.program }} points, valid until {{ points.expires_on }}. {{ optout }}"}
        incentive:
          kind: points
          settings: {program: Herald Rewards, rule: {by_field: customer.tier, amounts: {gold: 500}, default: 100}, expiry: {date: 2026-12-31}}
        """)
    msg = herald.load_message(path)
    assert validate_message(msg, herald.registry, herald.catalogue) == []
    (d,) = evaluate(msg, [Customer("ana", {"tier": "gold", "phone": "+14155550123"})], at=AT,
                    registry=herald.registry, render=True)
    assert d.rendered["payload"]["text"].startswith("500 Herald Rewards points, valid until 2026-12-31.")


# --- points by field: the field from the catalogue, the keys typed by it ---------------------------------

ORG_FIELDS = (FieldSpec("customer.vip", "boolean"), FieldSpec("customer.visits", "integer"),
              FieldSpec("customer.tier", "string", values=("bronze", "silver", "gold")),
              FieldSpec("customer.affinities", "list"))


@pytest.fixture
def fields():
    return build_catalogue(org_fields=ORG_FIELDS)


def by_field(field: str, amounts: dict, default: int = 1) -> Message:
    return message(program="Herald Rewards", rule={"by_field": field, "amounts": amounts, "default": default})


def rule_issues(msg: Message, registry, fields) -> set[tuple[str, str, str]]:
    return {(i.path, i.code, i.severity) for i in validate_message(msg, registry, fields)
            if i.path.startswith("incentive.settings")}


def phone(i: int, **attrs) -> Customer:
    return Customer(f"c{i}", {"phone": f"+1415555{i:04d}", **attrs})


@pytest.mark.parametrize("amounts", [{True: 500, False: 50}, {"true": 500, "false": 50}])
def test_a_boolean_field_matches_true_and_false_keys(registry, fields, amounts):
    msg = by_field("customer.vip", amounts)
    assert rule_issues(msg, registry, fields) == set()
    got = evaluate(msg, [phone(1, vip=True), phone(2, vip=False), phone(3)], at=AT, registry=registry)
    assert [d.incentive["amount"] for d in got] == [500, 50, 1]


def test_an_integer_field_matches_integer_and_quoted_integer_keys(registry, fields):
    msg = by_field("customer.visits", {1: 10, "2": 20})
    assert rule_issues(msg, registry, fields) == set()
    got = evaluate(msg, [phone(1, visits=1), phone(2, visits=2), phone(3, visits=3)], at=AT, registry=registry)
    assert [d.incentive["amount"] for d in got] == [10, 20, 1]


def test_an_unknown_field_is_a_load_error_with_a_suggestion(registry, fields):
    msg = by_field("customer.teir", {"gold": 5})
    (issue,) = [i for i in validate_message(msg, registry, fields) if i.path.startswith("incentive.settings")]
    assert (issue.path, issue.code, issue.severity) == ("incentive.settings.rule.by_field", "unknown_field", "error")
    assert "did you mean 'customer.tier'?" in issue.message


@pytest.mark.parametrize(("field", "amounts", "expected"), [
    ("customer.visits", {"gold": 5}, ("incentive.settings.rule.amounts.gold", "key_type", "error")),
    ("customer.vip", {"maybe": 5}, ("incentive.settings.rule.amounts.maybe", "key_type", "error")),
    ("customer.tier", {False: 5}, ("incentive.settings.rule.amounts.False", "key_type", "error")),  # YAML `no:`
    ("customer.visits", {1: 10, "1": 20}, ("incentive.settings.rule.amounts.1", "duplicate", "error")),
    ("customer.affinities", {"toys": 5}, ("incentive.settings.rule.by_field", "invalid", "error")),
    ("customer.tier", {"gold": 5, "diamond": 9}, ("incentive.settings.rule.amounts.diamond", "never_matches", "warning")),
])
def test_keys_are_checked_against_the_fields_type(registry, fields, field, amounts, expected):
    assert rule_issues(by_field(field, amounts), registry, fields) == {expected}


def test_a_key_that_can_never_match_warns_in_a_message_file_that_still_loads(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "{{ points.amount }} points for you. {{ optout }}"}
        incentive:
          kind: points
          settings: {program: Herald Rewards, rule: {by_field: customer.tier, amounts: {gold: 500, diamond: 900}, default: 100}}
        """)
    msg = herald.load_message(path)  # the sample fields.yaml closes tier to bronze … platinum
    found = [(i.path, i.code, i.severity) for i in validate_message(msg, herald.registry, herald.catalogue)]
    assert found == [("incentive.settings.rule.amounts.diamond", "never_matches", "warning")]


def test_an_unknown_field_in_a_message_file_names_the_setting(tmp_path, herald):
    path = write(tmp_path, """\
        creatives:
          - channel: sms
            content: {body: "{{ points.amount }} points for you. {{ optout }}"}
        incentive:
          kind: points
          settings: {program: Herald Rewards, rule: {by_field: customer.teir, amounts: {gold: 500}, default: 100}}
        """)
    with pytest.raises(MessageFileError) as err:
        herald.load_message(path)
    (problem,) = err.value.problems
    assert (problem.path, problem.code) == ("incentive.settings.rule.by_field", "unknown_field")
    assert problem.line == 13 and "customer.tier" in problem.message


def test_points_expiry_counts_from_the_scheduled_send(registry):
    msg = replace(message(program="Herald Rewards", amount=10, expiry={"days": 30}),
                  schedule=Schedule("at", datetime(2026, 7, 20, 9, 0, tzinfo=UTC)))
    (d,) = evaluate(msg, [phone(1)], at=AT, registry=registry)
    assert d.incentive["expires_on"] == "2026-08-19"


def test_a_fixed_points_expiry_before_the_scheduled_send_is_an_error():
    msg = replace(message(program="P", amount=5, expiry={"date": "2026-07-10"}),
                  schedule=Schedule("at", datetime(2026, 7, 20, 9, 0, tzinfo=UTC)))
    assert ("expiry.date", "before_send") in {(i.path, i.code) for i in Points().validate(msg.incentive.settings, msg)}


def test_closed_field_values_are_read_by_type_and_bad_ones_refused(tmp_path):
    from engine.errors import RuleFileError
    from engine.fields import load_org_fields

    good = tmp_path / "fields.yaml"
    good.write_text("customer:\n  visits: {type: integer, values: [1, '2']}\n", encoding="utf-8")
    assert load_org_fields(good)[0].values == (1, 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("customer:\n  visits: {type: integer, values: [1, many]}\n", encoding="utf-8")
    with pytest.raises(RuleFileError) as err:
        load_org_fields(bad)
    assert [(p.path, p.code) for p in err.value.problems] == [("customer.visits.values", "field_values")]


def test_points_ledgers_live_in_the_store_each_call_is_given(registry):
    from engine import InMemoryLedgerStore

    spec = {"program": "Herald Rewards", "amount": 200}
    msg, shared, other = message(**spec), InMemoryLedgerStore(), InMemoryLedgerStore()
    one, two = Points(), Points()

    def ctx(store):
        return EvaluationContext(msg, registry, AT, lambda kind, draft: (), False, ledger=store)

    grant = one.reserve(spec, Customer("ana"), ctx(shared), AT)
    credited = asyncio.run(two.issue(spec, grant, IncentiveContext(msg, shared, AT)))  # another instance
    assert credited["status"] == "credited" and vars(one) == vars(two) == {}
    with pytest.raises(KeyError, match="no points reserved"):
        asyncio.run(one.issue(spec, grant, IncentiveContext(msg, other, AT)))  # the other store never saw it
    assert (one.reservations(spec, msg, shared), one.reservations(spec, msg, other)) == (1, 0)
