"""The ruleset version: a golden value, and exactly what is hashed (behaviour) and what is not (prose, tests).

Every decision records the version of each ruleset it used, so a version that changes without a change of
behaviour (or stays while behaviour changes) makes the audit trail lie.
"""

from __future__ import annotations

import pytest

from engine.rulefiles import load_ruleset, load_ruleset_data

from ..conftest import EXAMPLES

BASE = """\
ruleset: p13n
kind: personalization
hit_policy: first
description: Which content each customer sees.
owner: crm-team
rules:
  - id: gold
    priority: 10
    description: gold members get the gold creative
    when: {field: customer.tier, eq: gold}
    then: {variant: gold, vars: {discount: 20}}
  - id: default
    priority: 100
    when: {always: true}
    then: {variant: generic}
tests:
  - given: {customer: {tier: gold}}
    expect: {fired: [gold]}
"""
#: sha256 of the canonical JSON of the rules, first 12 hex digits; a change here changes every decision's record
GOLDEN = "ab98a483fc56"

from engine.plugin_manager import make_plugin_manager  # noqa: E402
from engine.registry import Registry  # noqa: E402
from plugins import DEFAULT_PLUGINS  # noqa: E402

#: the rule kinds the built-in plugins register
KINDS = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False)).kinds


def version(catalogue, text: str = BASE) -> str:
    return load_ruleset_data(text, catalogue, kinds=KINDS, source="v.yaml").version


def test_the_version_is_a_golden_value(catalogue):
    assert version(catalogue) == GOLDEN


def test_the_sample_rulesets_have_stable_versions(herald):
    got = {p.name: herald.load_ruleset(p).version for p in sorted(EXAMPLES.glob("*.yaml")) if ".message." not in p.name}
    assert got == {"channel-priority.yaml": "e339e4bcda4d", "eligibility.yaml": "66fa6a5987f2",
                   "personalization.yaml": "f64545f0f424"}


def test_yaml_and_json_of_the_same_rules_have_the_same_version(tmp_path, catalogue):
    import json

    import yaml

    path = tmp_path / "v.json"
    path.write_text(json.dumps(yaml.safe_load(BASE), default=str))
    assert load_ruleset(path, catalogue, kinds=KINDS).version == GOLDEN


@pytest.mark.parametrize(("old", "new"), [
    ("description: Which content each customer sees.", "description: Another wording."),
    ("description: Which content each customer sees.\n", ""),
    ("owner: crm-team", "owner: someone-else"),
    ("    description: gold members get the gold creative", "    description: reworded"),
    ("    description: gold members get the gold creative\n", ""),
    ("expect: {fired: [gold]}", "expect: {variant: gold}"),
    ("tests:\n  - given: {customer: {tier: gold}}\n    expect: {fired: [gold]}\n", ""),
    ("when: {field: customer.tier, eq: gold}", "when: {field: customer.tier,  eq:  gold}"),  # layout only
    ("then: {variant: gold, vars: {discount: 20}}", "then: {vars: {discount: 20}, variant: gold}"),  # key order
], ids=["ruleset-description", "no-description", "owner", "rule-description", "no-rule-description",
        "test-expectation", "no-tests", "whitespace", "key-order"])
def test_prose_tests_and_layout_do_not_change_the_version(catalogue, old, new):
    assert old in BASE
    assert version(catalogue, BASE.replace(old, new)) == GOLDEN


@pytest.mark.parametrize(("old", "new"), [
    ("ruleset: p13n", "ruleset: p13n-b"),
    ("hit_policy: first", "hit_policy: collect"),
    ("priority: 10", "priority: 11"),
    ("id: gold", "id: golden"),
    ("eq: gold}", "eq: silver}"),
    ("eq: gold}", "ne: gold}"),
    ("discount: 20", "discount: 25"),
    ("variant: generic", "variant: plain"),
    ("priority: 100", "priority: 10"),  # now a tie with gold: file order decides, still the same result here
], ids=["name", "hit-policy", "priority", "rule-id", "literal", "operator", "vars", "variant", "tie"])
def test_every_change_of_behaviour_changes_the_version(catalogue, old, new):
    assert old in BASE
    assert version(catalogue, BASE.replace(old, new)) != GOLDEN


def test_the_order_of_rules_in_the_file_is_behaviour(catalogue):
    """Rules of equal priority fire in file order, so swapping two rules is a new version."""
    tied = BASE.replace("priority: 100", "priority: 10").replace("hit_policy: first", "hit_policy: collect")
    gold = tied[tied.index("  - id: gold"):tied.index("  - id: default")]
    default = tied[tied.index("  - id: default"):tied.index("tests:")]
    swapped = tied.replace(gold + default, default + gold)
    assert swapped != tied
    assert version(catalogue, swapped) != version(catalogue, tied)


def test_the_default_hit_policy_hashes_like_the_written_one(catalogue):
    assert version(catalogue, BASE.replace("hit_policy: first\n", "")) == GOLDEN
