"""Every rule file in rules/ loads cleanly, and its ``tests:`` examples pass on every evaluator."""

from __future__ import annotations

import json

import pytest

from engine.evaluators import EVALUATORS, get_evaluator
from engine.rulefiles import run_rule_tests
from engine.rulefiles.loader import load_ruleset
from engine.rulefiles.schema import json_schema_text
from tests.conftest import RULES

RULE_FILES = sorted(p for p in RULES.rglob("*.yaml") if p.name != "fields.yaml" and ".message." not in p.name)
RULE_FILES += sorted(p for p in RULES.rglob("*.json") if p.name != "schema.json")


CASES = [pytest.param(path, id=str(path.relative_to(RULES))) for path in RULE_FILES]


@pytest.mark.parametrize("path", CASES)
@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_rule_file_examples_pass(path, evaluator, catalogue, registry):
    ruleset = load_ruleset(path, catalogue, kinds=registry.kinds, channels=set(registry.channels))
    assert ruleset.tests, f"{path} has no tests: examples"
    assert run_rule_tests(ruleset, get_evaluator(evaluator), registry.kinds) == []


def test_there_are_rule_files_to_test():
    assert len(RULE_FILES) >= 3


def test_schema_json_is_in_sync_with_the_model(registry):
    """rules/schema.json is the schema for the rule kinds of the built-in plugins."""
    on_disk = (RULES / "schema.json").read_text(encoding="utf-8")
    assert on_disk == json_schema_text(registry.kinds), \
        "rules/schema.json is stale: run `herald rules schema > rules/schema.json`"
    schema = json.loads(on_disk)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"ruleset", "kind", "rules"}
