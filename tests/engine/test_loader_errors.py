"""Rule-file load errors in full, as ``herald rules check`` prints them: ``file:line:column: rule:path: what``
for every kind of mistake, plus the summary line and the compiled IR of what loads. Written from the
mutation run of engine/rulefiles/loader.py (tests/MUTATION.md): each test pins a text, a position or a
value that a surviving mutant could change without any other test noticing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.errors import RuleFileError
from engine.rulefiles import load_ruleset, load_ruleset_data
from engine.rulefiles.ir import Always, AnyOf, Cmp, Not

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
CHANNELS = """\
ruleset: ch
kind: channel_priority
rules:
  - id: r
    priority: 1
    when: {always: true}
    then: {channels: CHANNELS}
"""


def error(text: str, catalogue, kinds, **kw) -> RuleFileError:
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data(text, catalogue, kinds=kinds, source="r.yaml", **kw)
    return info.value


def printed(text: str, catalogue, kinds, **kw) -> list[str]:
    """The problems as the CLI prints them, one line each."""
    return [str(p) for p in error(text, catalogue, kinds, **kw).problems]


def when(condition: str) -> str:
    return GOOD.replace("{field: customer.tier, eq: gold}", condition)


# --- the file as a whole ----------------------------------------------------------------------------------

def test_a_file_that_is_not_a_mapping(catalogue, kinds):
    exc = error("- a\n- b\n", catalogue, kinds)
    assert str(exc).splitlines()[0] == "r.yaml: invalid rule file"
    assert [str(p) for p in exc.problems] == ["r.yaml:1:1: a rule file is a mapping with ruleset, kind, rules"]
    assert exc.problems[0].code == "shape"


def test_a_message_file_given_as_a_rule_file(catalogue, kinds):
    exc = error("message: summer\n", catalogue, kinds)
    assert str(exc).splitlines()[0] == "r.yaml: not a rule file"
    assert [str(p) for p in exc.problems] == [
        "r.yaml:1:1: this is a message file (it has 'message:'), not a rule file; check it with herald message check"]
    assert exc.problems[0].code == "shape"
    # a rule file may still have a key named message next to ruleset: it is checked as a rule file
    assert printed(GOOD + "message: x\n", catalogue, kinds) == ["r.yaml:13:1: message: unknown key 'message'"]


def test_an_unknown_kind_lists_the_registered_ones(catalogue, kinds):
    exc = error(GOOD.replace("kind: personalization", "kind: personalisation"), catalogue, kinds)
    assert str(exc).splitlines()[0] == "r.yaml: invalid rule file"
    assert [(str(p), p.code) for p in exc.problems] == [(
        "r.yaml:2:1: kind: unknown rule kind 'personalisation'; registered: audience_filter, channel_priority, "
        "eligibility, personalization", "unknown_kind")]


def test_a_hit_policy_the_kind_does_not_take(catalogue, kinds):
    only_first = {**kinds, "personalization": replace(kinds["personalization"], hit_policies=("first",))}
    exc = error(GOOD.replace("hit_policy: first", "hit_policy: collect"), catalogue, only_first)
    assert str(exc).splitlines()[0] == "r.yaml: 1 problem(s) in ruleset p13n"
    assert [(str(p), p.code) for p in exc.problems] == [
        ("r.yaml:3:1: hit_policy: a personalization ruleset takes hit_policy first, not collect", "hit_policy")]
    other = {**kinds, "personalization": replace(kinds["personalization"], hit_policies=("first", "unique"))}
    assert [str(p) for p in error(GOOD.replace("hit_policy: first", "hit_policy: collect"), catalogue, other).problems
            ] == ["r.yaml:3:1: hit_policy: a personalization ruleset takes hit_policy first or unique, not collect"]
    two = {**kinds, "personalization": replace(kinds["personalization"], hit_policies=("first", "collect"))}
    assert load_ruleset_data(GOOD, catalogue, kinds=two).hit_policy == "first"


def test_the_summary_counts_the_problems_and_names_the_ruleset(catalogue, kinds):
    text = GOOD.replace("customer.tier", "customer.nope").replace("id: default", "id: gold")
    assert str(error(text, catalogue, kinds)).splitlines()[0] == "r.yaml: 2 problem(s) in ruleset p13n"


def test_a_missing_file_and_a_folder_name_the_path(tmp_path, catalogue, kinds):
    with pytest.raises(RuleFileError) as info:
        load_ruleset(tmp_path / "nope.yaml", catalogue, kinds=kinds)
    assert str(info.value).splitlines()[0] == f"{tmp_path / 'nope.yaml'}: file not found"
    assert [str(p) for p in info.value.problems] == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_data_in_memory_too_deep_is_a_rule_file_error(catalogue, kinds):
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data({"ruleset": "x", "kind": "personalization", "rules": [], "x": deep}, catalogue,
                          kinds=kinds, source="api.json")
    assert str(info.value).splitlines()[0] == "api.json: refused"
    assert [p.code for p in info.value.problems] == ["too_deep"]


# --- rules --------------------------------------------------------------------------------------------------

def test_a_rule_without_an_id_is_named_by_its_index(catalogue, kinds):
    text = GOOD.replace("  - id: gold\n    priority: 10", "  - priority: 10")
    assert printed(text, catalogue, kinds) == ["r.yaml:5:5: rules[0]: id: field required"]


def test_a_rule_without_then(catalogue, kinds):
    assert printed(GOOD.replace("    then: {variant: gold}\n", ""), catalogue, kinds) == [
        "r.yaml:5:5: gold: then: field required"]


def test_an_unknown_key_inside_a_condition_points_at_that_key(catalogue, kinds):
    """pydantic names the condition's union member in its error location (``when.not.not.field.eqq``); the
    problem must point at the key in the file, not at the ``field`` value."""
    assert printed(when("{not: {field: customer.tier, eqq: gold}}"), catalogue, kinds) == [
        "r.yaml:7:40: gold:when.not.eqq: unknown key 'eqq'"]
    assert printed(when("{field: customer.tier, in: gold}"), catalogue, kinds) == [
        "r.yaml:7:34: gold:when.in: Input should be a valid list"]
    assert printed(when("{any: [{always: true}, {all: [{field: customer.tier, eq: a, colour: b}]}]}"),
                   catalogue, kinds) == ["r.yaml:7:71: gold:when.any[1].all[0].colour: unknown key 'colour'"]


def test_duplicate_ids_are_reported_and_the_rest_still_checked(catalogue, kinds):
    text = GOOD.replace("id: default", "id: gold").replace("{always: true}", "{field: customer.nope, eq: 1}")
    assert printed(text, catalogue, kinds) == ["r.yaml:9:5: gold:id: duplicate rule id (first used by rules[0])"]


def test_a_then_that_does_not_fit_the_kind(catalogue, kinds):
    assert printed(GOOD.replace("then: {variant: gold}", "then: {variant: gold, colour: red}"), catalogue, kinds) == [
        "r.yaml:8:27: gold:then.colour: Extra inputs are not permitted"]
    exc = error(GOOD.replace("then: {variant: gold}", "then: {}").replace("{always: true}", "{field: customer.x, eq: 1}"),
                catalogue, kinds)
    assert [(str(p), p.code) for p in exc.problems] == [("r.yaml:8:5: gold:then.variant: Field required", "then"),
                                                        ("r.yaml:11:12: default:when: unknown field 'customer.x' "
                                                         "(did you mean 'customer.id'?)", "unknown_field")]


@pytest.mark.parametrize(("channels", "expected"), [
    ("[sms, pigeon]", ["r.yaml:7:28: r:then.channels[1]: unknown channel 'pigeon'; registered: email, sms"]),
    ("[pigeon, owl]", ["r.yaml:7:23: r:then.channels[0]: unknown channel 'pigeon'; registered: email, sms",
                       "r.yaml:7:31: r:then.channels[1]: unknown channel 'owl'; registered: email, sms"]),
])
def test_unknown_channels_are_named_with_their_place(catalogue, kinds, channels, expected):
    text = CHANNELS.replace("CHANNELS", channels)
    assert printed(text, catalogue, kinds, channels={"sms", "email"}) == expected
    assert load_ruleset_data(text, catalogue, kinds=kinds).rules[0].then["channels"] == channels[1:-1].split(", ")


def test_a_single_channel_name_is_checked_too(catalogue, kinds):
    kind = replace(kinds["channel_priority"], channel_fields=("channels", "fallback"))
    from pydantic import BaseModel, ConfigDict

    class Then(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channels: list[str]
        fallback: str | None = None

    text = CHANNELS.replace("{channels: CHANNELS}", "{channels: [sms], fallback: pigeon}")
    found = printed(text, catalogue, {**kinds, "channel_priority": replace(kind, then_model=Then)},
                    channels={"sms", "email"})
    assert found == ["r.yaml:7:29: r:then.fallback: unknown channel 'pigeon'; registered: email, sms"]


def test_every_rule_after_an_always_rule_is_unreachable_under_first(catalogue, kinds):
    text = GOOD.replace("priority: 100", "priority: 5") + (
        "  - id: late\n    priority: 200\n    when: {always: true}\n    then: {variant: x}\n")
    exc = error(text, catalogue, kinds)
    assert [(str(p), p.code) for p in exc.problems] == [
        ("r.yaml:6:5: gold:priority: can never fire: rule default (always, priority 5) fires first under hit_policy "
         "first", "unreachable"),
        ("r.yaml:14:5: late:priority: can never fire: rule default (always, priority 5) fires first under hit_policy "
         "first", "unreachable")]


def test_an_always_rule_last_shadows_nothing(catalogue, kinds):
    rules = load_ruleset_data(GOOD, catalogue, kinds=kinds).rules
    assert [(r.id, r.priority) for r in rules] == [("gold", 10), ("default", 100)]


def test_equal_priorities_keep_file_order(catalogue, kinds):
    text = GOOD.replace("priority: 100", "priority: 10").replace("{always: true}", "{field: customer.tier, eq: x}")
    text = text.replace("  - id: gold", "  - id: first").replace("then: {variant: gold}", "then: {variant: a}")
    assert [r.id for r in load_ruleset_data(text, catalogue, kinds=kinds).rules] == ["first", "default"]


# --- conditions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("condition", "expected"), [
    ("{field: customer.teir, eq: gold}", "r.yaml:7:12: gold:when: unknown field 'customer.teir' "
                                         "(did you mean 'customer.tier'?)"),
    ("{field: customer.zzzzzz, eq: 1}", "r.yaml:7:12: gold:when: unknown field 'customer.zzzzzz'; "
                                        "declare customer fields in rules/fields.yaml"),
    ("{any: [{always: true}, {field: customer.zzzzzz, eq: 1}]}",
     "r.yaml:7:35: gold:when.any[1]: unknown field 'customer.zzzzzz'; declare customer fields in rules/fields.yaml"),
    ("{all: [{always: true}, {not: {field: customer.zzzzzz, eq: 1}}]}",
     "r.yaml:7:41: gold:when.all[1].not: unknown field 'customer.zzzzzz'; declare customer fields in rules/fields.yaml"),
    ("{field: customer.tier, matches: '(a'}", "r.yaml:7:34: gold:when: invalid regular expression '(a': "),
    ("{field: customer.points, matches: '1.*'}", "r.yaml:7:36: gold:when: matches needs a string field; "
                                                 "customer.points is integer"),
    ("{field: customer.tier, contains: g}", "r.yaml:7:34: gold:when: contains needs a list field; "
                                            "customer.tier is string"),
    ("{field: customer.tier, contains_any: [g]}", "r.yaml:7:34: gold:when: contains_any needs a list field; "
                                                  "customer.tier is string"),
    ("{field: customer.affinities, eq: shoes}", "r.yaml:7:40: gold:when: eq does not apply to list field "
                                                "customer.affinities; use contains or contains_any"),
    ("{field: customer.affinities, in: [shoes]}", "r.yaml:7:40: gold:when: in does not apply to list field "
                                                  "customer.affinities; use contains or contains_any"),
    ("{field: customer.points, in: [1, x]}", "r.yaml:7:36: gold:when: customer.points is integer: "
                                             "expected a integer, got the text 'x'"),
    ("{field: customer.tier, between: [a, b]}", "r.yaml:7:34: gold:when: between needs a number or date field; "
                                                "customer.tier is string"),
    ("{field: customer.points, between: [3, 2]}", "r.yaml:7:36: gold:when: between [3, 2]: the lower bound is "
                                                  "above the upper bound"),
    ("{field: customer.tier, gte: a}", "r.yaml:7:34: gold:when: gte needs a number or date field; "
                                       "customer.tier is string"),
    ("{field: customer.tier, eq: 3}", "r.yaml:7:34: gold:when: customer.tier is string: expected text, got 3"),
    ("{field: customer.dnd, eq: 'true'}", "r.yaml:7:33: gold:when: customer.dnd is boolean: expected a boolean, "
                                          "got the text 'true'"),
    ("{field: customer.points, eq: '3'}", "r.yaml:7:36: gold:when: customer.points is integer: expected a integer, "
                                          "got the text '3'"),
    ("{field: customer.lifetime_value, eq: '3.5'}", "r.yaml:7:44: gold:when: customer.lifetime_value is number: "
                                                    "expected a number, got the text '3.5'"),
])
def test_condition_errors_in_full(catalogue, kinds, condition, expected):
    exc = error(when(condition), catalogue, kinds)
    (problem,) = exc.problems
    assert str(problem).startswith(expected)
    assert problem.code in {"unknown_field", "bad_regex", "type_mismatch", "empty_range"}


@pytest.mark.parametrize(("condition", "ir"), [
    ("{field: customer.tier, exists: true}", Cmp("customer.tier", "exists", True)),
    ("{field: customer.tier, missing: true}", Cmp("customer.tier", "missing", True)),
    ("{field: customer.points, between: [3, 3]}", Cmp("customer.points", "between", (3, 3))),
    ("{field: customer.points, in: [1, 2]}", Cmp("customer.points", "in", (1, 2))),
    ("{field: customer.tier, not_in: [a, b]}", Cmp("customer.tier", "not_in", ("a", "b"))),
    ("{field: customer.affinities, contains: shoes}", Cmp("customer.affinities", "contains", "shoes")),
    ("{field: customer.affinities, contains_any: [a, b]}", Cmp("customer.affinities", "contains_any", ("a", "b"))),
    ("{field: customer.tier, matches: '^g'}", Cmp("customer.tier", "matches", "^g")),
    ("{field: customer.last_purchase_date, lt: 2026-01-31}", Cmp("customer.last_purchase_date", "lt", "2026-01-31")),
    ("{field: customer.dnd, ne: true}", Cmp("customer.dnd", "ne", True)),
    ("{any: [{always: true}, {not: {field: customer.tier, eq: a}}]}",
     AnyOf((Always(), Not(Cmp("customer.tier", "eq", "a"))))),
])
def test_what_loads_compiles_to_this_ir(catalogue, kinds, condition, ir):
    assert load_ruleset_data(when(condition), catalogue, kinds=kinds).rules[0].when == ir


# --- tests: examples --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "expected"), [
    ("{customer: {teir: gold}}", "r.yaml:14:24: tests[0].given.customer.teir: unknown field 'customer.teir' "
                                 "(did you mean 'customer.tier'?)"),
    ("{customer: {points: lots}}", "r.yaml:14:24: tests[0].given.customer.points: expected a number, got 'lots'"),
    ("{time: {local_hour: x}}", "r.yaml:14:20: tests[0].given.time.local_hour: expected a number, got 'x'"),
    ("{custmer: {tier: gold}}", "r.yaml:14:23: tests[0].given.custmer.tier: unknown field 'custmer.tier' "
                                "(did you mean 'customer.tier'?)"),
    ("{customer: {zzqqxx: 1}}", "r.yaml:14:24: tests[0].given.customer.zzqqxx: unknown field 'customer.zzqqxx'; "
                                "declare customer fields in rules/fields.yaml"),
])
def test_example_facts_no_rule_could_see_are_errors(catalogue, kinds, given, expected):
    text = GOOD + f"tests:\n  - given: {given}\n    expect: {{fired: [gold]}}\n"
    (problem,) = error(text, catalogue, kinds).problems
    assert str(problem).startswith(expected)
    assert problem.code == ("type" if "expected" in expected else "unknown_field")


def test_example_facts_that_fit_load_with_the_examples(catalogue, kinds):
    text = GOOD + ("tests:\n  - given: {customer: {tier: gold, address: {}}, time: {local_hour: 3}}\n"
                   "    expect: {fired: [gold]}\n")
    ruleset = load_ruleset_data(text, catalogue, kinds=kinds, source="t.yaml")
    assert ruleset.tests == ({"given": {"customer": {"tier": "gold", "address": {}}, "time": {"local_hour": 3}},
                              "expect": {"fired": ["gold"]}},)
    assert (ruleset.name, ruleset.kind, ruleset.hit_policy, ruleset.source) == ("p13n", "personalization", "first",
                                                                               "t.yaml")


# --- every problem at once, each at its place -------------------------------------------------------------

def test_an_unknown_kind_and_schema_errors_are_reported_together(catalogue, kinds):
    text = GOOD.replace("kind: personalization", "kind: personalisation").replace("hit_policy: first\n",
                                                                                  "hit_policy: first\ncolour: red\n")
    assert printed(text, catalogue, kinds) == [
        "r.yaml:2:1: kind: unknown rule kind 'personalisation'; registered: audience_filter, channel_priority, "
        "eligibility, personalization",
        "r.yaml:4:1: colour: unknown key 'colour'"]


def test_a_duplicate_id_not_on_the_first_line_of_its_rule_and_the_rules_after_it(catalogue, kinds):
    text = GOOD.replace("  - id: default\n    priority: 100\n", "  - priority: 100\n    id: gold\n") + (
        "  - id: third\n    priority: 200\n    when: {field: customer.nope, eq: 1}\n    then: {variant: x}\n")
    exc = error(text, catalogue, kinds)
    assert [(str(p), p.code) for p in exc.problems] == [
        ("r.yaml:10:5: gold:id: duplicate rule id (first used by rules[0])", "duplicate_id"),
        ("r.yaml:15:12: third:when: unknown field 'customer.nope' (did you mean 'customer.phone'?)", "unknown_field")]


def test_unknown_channels_are_reported_with_the_problems_of_earlier_rules(catalogue, kinds):
    text = CHANNELS.replace("CHANNELS", "[sms]").replace("when: {always: true}", "when: {field: customer.nope, eq: 1}")
    text += "  - id: s\n    priority: 2\n    when: {always: true}\n    then: {channels: [owl]}\n"
    exc = error(text, catalogue, kinds, channels={"sms"})
    assert [(str(p), p.code) for p in exc.problems] == [
        ("r.yaml:6:12: r:when: unknown field 'customer.nope' (did you mean 'customer.phone'?)", "unknown_field"),
        ("r.yaml:11:23: s:then.channels[0]: unknown channel 'owl'; registered: sms", "unknown_channel")]


def test_example_problems_are_reported_with_the_rules_problems(catalogue, kinds):
    text = GOOD.replace("customer.tier", "customer.nope") + (
        "tests:\n  - given: {customer: {teir: gold, zzqqxx: 1}, time: {local_hour: x}}\n"
        "    expect: {fired: [gold]}\n")
    assert printed(text, catalogue, kinds) == [
        "r.yaml:7:12: gold:when: unknown field 'customer.nope' (did you mean 'customer.phone'?)",
        "r.yaml:14:24: tests[0].given.customer.teir: unknown field 'customer.teir' (did you mean 'customer.tier'?)",
        "r.yaml:14:36: tests[0].given.customer.zzqqxx: unknown field 'customer.zzqqxx'; declare customer fields in "
        "rules/fields.yaml",
        "r.yaml:14:55: tests[0].given.time.local_hour: expected a number, got 'x'"]


def test_an_empty_customer_in_an_example_does_not_hide_the_facts_after_it(catalogue, kinds):
    text = GOOD + "tests:\n  - given: {customer: {}, time: {local_hour: x}}\n    expect: {fired: [gold]}\n"
    assert printed(text, catalogue, kinds) == ["r.yaml:14:34: tests[0].given.time.local_hour: expected a number, got 'x'"]


# --- schema errors: where pydantic's location lands in the file -------------------------------------------

def test_an_unknown_key_in_a_comparison_inside_any_or_all(catalogue, kinds):
    assert printed(when("{any: [{always: true}, {field: customer.tier, eqq: a}]}"), catalogue, kinds) == [
        "r.yaml:7:57: gold:when.any[1].eqq: unknown key 'eqq'"]
    assert printed(when("{all: [{field: customer.tier, eqq: a}]}"), catalogue, kinds) == [
        "r.yaml:7:41: gold:when.all[0].eqq: unknown key 'eqq'"]


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("rules:\n", "rules: 5\nx:\n"), [("r.yaml:4:1: rules: Input should be a valid list", "list_type"),
                                                  ("r.yaml:5:1: x: unknown key 'x'", "extra_forbidden")]),
    ("ruleset: p\nkind: personalization\nrules: [5]\n", [
        ("r.yaml:3:9: rules[0]: Input should be a valid dictionary or instance of RuleModel", "model_type")]),
    (GOOD + "field: x\n", [("r.yaml:13:1: field: unknown key 'field'", "extra_forbidden")]),
    (GOOD.replace("    then: {variant: gold}\n", ""), [("r.yaml:5:5: gold: then: field required", "missing")]),
    (when("{field: customer.tier, eq: gold, ne: silver}"), [
        ("r.yaml:7:5: gold:when: a comparison needs exactly one operator of eq, ne, lt, lte, gt, gte, in, not_in, "
         "between, contains, contains_any, matches, exists, missing; got ['eq', 'ne']", "value_error")]),
    (when("{foo: 1}"), [("r.yaml:7:5: gold:when: a condition is one of {all: [...]}, {any: [...]}, {not: ...}, "
                         "{always: true} or {field: ..., <op>: ...}", "condition")]),
    (when("{field: customer.tier, not_in: a}"), [("r.yaml:7:34: gold:when.not_in: Input should be a valid list",
                                                  "list_type")]),
])
def test_schema_errors_in_full(catalogue, kinds, text, expected):
    assert [(str(p), p.code) for p in error(text, catalogue, kinds).problems] == expected


# --- the entry points ---------------------------------------------------------------------------------------

def test_data_in_memory_loads_like_text_and_names_its_source(catalogue, kinds):
    import yaml

    data = yaml.safe_load(GOOD)
    assert load_ruleset_data(data, catalogue, kinds=kinds).rules == load_ruleset_data(GOOD, catalogue, kinds=kinds).rules
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data({**data, "colour": 1}, catalogue, kinds=kinds)
    assert str(info.value).splitlines() == ["<api>: invalid rule file", "  <api>: colour: unknown key 'colour'"]
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data({**data, "colour": 1}, catalogue, kinds=kinds, source="api.json")
    assert str(info.value).splitlines()[0] == "api.json: invalid rule file"


def test_without_a_catalogue_rules_may_test_the_built_in_fields_only(kinds):
    assert load_ruleset_data(GOOD.replace("customer.tier", "customer.id"), kinds=kinds).rules[0].when == Cmp(
        "customer.id", "eq", "gold")
    with pytest.raises(RuleFileError, match="unknown field 'customer.tier'"):
        load_ruleset_data(GOOD, kinds=kinds)


def test_a_rule_file_names_only_registered_channels(tmp_path, catalogue, kinds):
    path = tmp_path / "ch.yaml"
    path.write_text(CHANNELS.replace("CHANNELS", "[sms, owl]"), encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        load_ruleset(path, catalogue, kinds=kinds, channels={"sms"})
    assert [str(p) for p in info.value.problems] == [f"{path}:7:28: r:then.channels[1]: unknown channel 'owl'; "
                                                     "registered: sms"]
