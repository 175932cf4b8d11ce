"""Loading rule files: every problem found at load time, with file, line, column, rule id and path."""

from __future__ import annotations

import json

import pytest

from engine.errors import RuleFileError
from engine.rulefiles import load_ruleset, load_ruleset_data
from engine.rulefiles.ir import All, Always, Cmp, Not

GOOD = """\
ruleset: p13n
kind: personalization
hit_policy: first
rules:
  - id: gold
    priority: 10
    when: {field: customer.tier, eq: gold}
    then: {variant: gold}
  - id: default
    priority: 100
    when: {always: true}
    then: {variant: generic}
"""


def problems(text, catalogue, kinds, **kw):
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data(text, catalogue, kinds=kinds, source="r.yaml", **kw)
    return [str(p) for p in info.value.problems]


def test_a_good_file_compiles_to_sorted_ir_with_a_content_version(catalogue, kinds):
    rs = load_ruleset_data(GOOD, catalogue, kinds=kinds)
    assert [r.id for r in rs.rules] == ["gold", "default"]
    assert rs.rules[0].when == Cmp("customer.tier", "eq", "gold")
    assert isinstance(rs.rules[1].when, Always)
    assert len(rs.version) == 12
    assert load_ruleset_data(GOOD, catalogue, kinds=kinds).version == rs.version
    changed = load_ruleset_data(GOOD.replace("eq: gold", "eq: platinum"), catalogue, kinds=kinds)
    assert changed.version != rs.version


def test_tests_and_descriptions_do_not_change_the_version(catalogue, kinds):
    with_tests = GOOD + "tests:\n  - given: {customer: {tier: gold}}\n    expect: {fired: [gold]}\n"
    assert load_ruleset_data(with_tests, catalogue, kinds=kinds).version == load_ruleset_data(GOOD, catalogue, kinds=kinds).version


def test_json_and_yaml_share_one_schema(tmp_path, catalogue, kinds):
    import yaml

    path = tmp_path / "p.json"
    path.write_text(json.dumps(yaml.safe_load(GOOD)))
    assert load_ruleset(path, catalogue, kinds=kinds).rules == load_ruleset_data(GOOD, catalogue, kinds=kinds).rules


def test_unknown_field_names_file_line_column_rule_and_suggests(catalogue, kinds):
    text = GOOD.replace("customer.tier", "customer.teir")
    (msg,) = problems(text, catalogue, kinds)
    assert msg.startswith("r.yaml:7:12: gold:when: unknown field 'customer.teir'")
    assert "did you mean 'customer.tier'" in msg


def test_unknown_keys_are_rejected_with_their_place(catalogue, kinds):
    text = GOOD.replace("hit_policy: first", "hit_policy: first\ncolour: red")
    (msg,) = problems(text, catalogue, kinds)
    assert msg.startswith("r.yaml:4:1: colour: unknown key 'colour'")


def test_two_operators_in_one_comparison_are_rejected(catalogue, kinds):
    text = GOOD.replace("{field: customer.tier, eq: gold}", "{field: customer.tier, eq: gold, ne: silver}")
    (msg,) = problems(text, catalogue, kinds)
    assert "gold:when" in msg and "exactly one operator" in msg


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{field: customer.points, gt: lots}", "customer.points is integer: expected a integer, got the text 'lots'"),
        ("{field: customer.tier, lt: 3}", "lt needs a number or date field; customer.tier is string"),
        ("{field: customer.affinities, eq: shoes}", "use contains or contains_any"),
        ("{field: customer.tier, contains: g}", "contains needs a list field"),
        ("{field: customer.points, matches: '1.*'}", "matches needs a string field"),
        ("{field: customer.first_name, matches: '(unclosed'}", "invalid regular expression"),
        ("{field: time.local_hour, between: [22, 18]}", "the lower bound is above the upper bound"),
        ("{field: customer.dnd, eq: 1}", "customer.dnd is boolean"),
        ("{field: customer.last_purchase_date, gt: not-a-date}", "expected a date YYYY-MM-DD"),
    ],
)
def test_operator_type_mismatches_are_load_time_errors(catalogue, kinds, condition, expected):
    text = GOOD.replace("{field: customer.tier, eq: gold}", condition)
    (msg,) = problems(text, catalogue, kinds)
    assert msg.startswith("r.yaml:7:")
    assert expected in msg


def test_duplicate_rule_ids_are_errors(catalogue, kinds):
    text = GOOD.replace("id: default", "id: gold")
    (msg,) = problems(text, catalogue, kinds)
    assert msg == "r.yaml:9:5: gold:id: duplicate rule id (first used by rules[0])"


def test_rules_shadowed_by_an_earlier_always_rule_can_never_fire(catalogue, kinds):
    text = GOOD.replace("priority: 100", "priority: 5")
    (msg,) = problems(text, catalogue, kinds)
    assert "gold:priority: can never fire: rule default (always, priority 5)" in msg


def test_shadowing_does_not_apply_to_collect(catalogue, kinds):
    text = GOOD.replace("priority: 100", "priority: 5").replace("hit_policy: first", "hit_policy: collect")
    assert [r.id for r in load_ruleset_data(text, catalogue, kinds=kinds).rules] == ["default", "gold"]


def test_then_is_checked_against_the_kind(catalogue, kinds):
    text = GOOD.replace("then: {variant: gold}", "then: {channels: [sms]}")
    msgs = problems(text, catalogue, kinds)
    assert any("gold:then.variant" in m and "Field required" in m for m in msgs)
    assert any("gold:then.channels" in m and "Extra inputs" in m for m in msgs)


def test_channel_priority_rules_name_registered_channels(catalogue, kinds):
    text = """\
ruleset: ch
kind: channel_priority
rules:
  - id: r
    priority: 1
    when: {always: true}
    then: {channels: [sms, pigeon]}
"""
    (msg,) = problems(text, catalogue, kinds, channels={"sms", "email"})
    assert msg.startswith("r.yaml:7:28: r:then.channels[1]: unknown channel 'pigeon'")


def test_every_problem_is_reported_at_once(catalogue, kinds):
    text = GOOD.replace("customer.tier", "customer.nope").replace("id: default", "id: gold")
    assert len(problems(text, catalogue, kinds)) == 2


def test_yaml_syntax_errors_give_line_and_column(catalogue, kinds):
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data("ruleset: x\nrules: [\n  - a\n", catalogue, kinds=kinds, source="bad.yaml")
    (p,) = info.value.problems
    assert p.file == "bad.yaml" and p.line is not None and p.column is not None


def test_literals_are_normalised_in_the_ir(catalogue, kinds):
    text = GOOD.replace("{field: customer.tier, eq: gold}",
                        "{not: {all: [{field: customer.last_purchase_date, gte: 2026-01-01}, {field: customer.tier, in: [a, b]}]}}")
    cond = load_ruleset_data(text, catalogue, kinds=kinds).rules[0].when
    assert cond == Not(All((Cmp("customer.last_purchase_date", "gte", "2026-01-01"), Cmp("customer.tier", "in", ("a", "b")))))


def test_a_missing_file_is_a_clear_error(tmp_path, catalogue, kinds):
    with pytest.raises(RuleFileError):
        load_ruleset(tmp_path / "nope.yaml", catalogue, kinds=kinds)
