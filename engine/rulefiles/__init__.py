"""Rules as data: file → validated model → neutral IR (→ durable-rules JSON in the durable evaluator)."""

from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Condition, Not, Rule, Ruleset
from engine.rulefiles.loader import load_ruleset, load_ruleset_data
from engine.rulefiles.outcome import flatten, run_rule_tests

__all__ = [
    "All", "Always", "AnyOf", "Cmp", "Condition", "Not", "Rule", "Ruleset",
    "flatten", "load_ruleset", "load_ruleset_data", "run_rule_tests",
]
