"""durable-rules' limits: rulesets durable cannot run are refused by its evaluator (naming the limit), never
hang or abort the process; the other evaluators keep working on them."""

from __future__ import annotations

import math

import pytest

from engine.errors import EvaluationError
from engine.evaluators import get_evaluator
from engine.evaluators.durable import MAX_ALTERNATIVES, DurableEvaluator, alternatives, to_durable
from engine.rulefiles.ir import All, AnyOf, Cmp, Not, Rule, Ruleset

OTHERS = ("compiled", "reference", "columnar")


def many_rules(n: int, version: str) -> Ruleset:
    rules = tuple(Rule(f"r{i}", i, Cmp("customer.tier", "eq", f"t{i}"), {"variant": "x"}) for i in range(n))
    return Ruleset("many", "personalization", "first", rules, version)


def test_a_ruleset_of_512_rules_is_refused_by_durable_naming_the_limit_and_runs_elsewhere():
    rs = many_rules(512, "512-rules")  # durable-rules 2.0.28 hangs on this one
    with pytest.raises(EvaluationError, match=r"expand to 512 alternatives, over durable's limit of 500"):
        DurableEvaluator().fired(rs, {"customer.tier": "t511"})
    for name in OTHERS:
        assert get_evaluator(name).fired(rs, {"customer.tier": "t511"}) == ("r511",), name


def test_a_ruleset_at_the_limit_runs_on_durable():
    rs = many_rules(MAX_ALTERNATIVES, "at-limit")
    assert DurableEvaluator().fired(rs, {"customer.tier": f"t{MAX_ALTERNATIVES - 1}"}) == (f"r{MAX_ALTERNATIVES - 1}",)


def test_one_long_in_list_counts_each_value():
    values = tuple(f"t{i}" for i in range(600))
    rs = Ruleset("long-in", "personalization", "first", (Rule("r", 1, Cmp("customer.tier", "in", values), {}),), "v")
    with pytest.raises(EvaluationError, match="600 alternatives"):
        DurableEvaluator().fired(rs, {"customer.tier": "t599"})
    assert get_evaluator("compiled").fired(rs, {"customer.tier": "t599"}) == ("r",)


def test_alternatives_add_under_any_and_multiply_under_all():
    def count(cond):
        definition, _ = to_durable(Ruleset("c", "personalization", "first", (Rule("r", 1, cond, {}),), "v"),
                                   lambda rid: rid)
        return alternatives(definition["r"]["all"])

    three = Cmp("customer.tier", "in", ("a", "b", "c"))
    four = Cmp("customer.city", "in", ("w", "x", "y", "z"))
    assert count(three) == 3
    assert count(AnyOf((three, four))) == 7
    assert count(All((three, four))) == 12
    assert count(Not(Cmp("customer.tier", "eq", "a"))) == 2  # absent, or another value


@pytest.mark.parametrize("literal", [math.inf, -math.inf, math.nan])
def test_a_non_finite_number_in_a_condition_is_refused_when_loaded(literal):
    rs = Ruleset("nonfinite", "personalization", "first",
                 (Rule("r", 1, Cmp("customer.ltv", "lt", literal), {}),), f"c{literal}")
    with pytest.raises(EvaluationError, match=r"non-finite number .* takes finite numbers only"):
        DurableEvaluator().load(rs)
    assert get_evaluator("compiled").fired(rs, {"customer.ltv": 1.0}) == (() if math.isnan(literal) or literal < 0
                                                                          else ("r",))


@pytest.mark.parametrize("value", [math.inf, math.nan, [1.0, math.inf]])
def test_a_non_finite_number_in_the_facts_is_refused_not_a_crash(value):
    rs = Ruleset("facts", "personalization", "first", (Rule("r", 1, Cmp("customer.ltv", "gt", 1), {}),), "v")
    with pytest.raises(EvaluationError, match=r"non-finite number .* in the fact customer.ltv"):
        DurableEvaluator().fired(rs, {"customer.ltv": value})
    assert DurableEvaluator().fired(rs, {"customer.ltv": 2.0}) == ("r",)  # the host still works
    if not isinstance(value, list):
        assert get_evaluator("compiled").fired(rs, {"customer.ltv": value}) == (("r",) if value == math.inf else ())
