"""Boundaries no other test pins: equal bounds of ordered comparisons, and ties between equal priorities,
in every evaluator (reference, compiled, durable, columnar), from rule files as a marketer writes them."""

from __future__ import annotations

import pytest

from engine.evaluators import EVALUATORS, get_evaluator
from engine.evaluators.columnar import ColumnarEvaluator, facts_frame
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.rulefiles import load_ruleset_data
from plugins import DEFAULT_PLUGINS

#: the rule kinds the built-in plugins register
KINDS = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False)).kinds


@pytest.fixture(params=EVALUATORS)
def evaluator(request):
    return get_evaluator(request.param)


def one_rule(catalogue, condition: str):
    text = f"""\
ruleset: edge
kind: personalization
rules:
  - id: hit
    priority: 1
    when: {condition}
    then: {{variant: hit}}
"""
    return load_ruleset_data(text, catalogue, kinds=KINDS, source="edge.yaml")


# (condition as written in a rule file, facts, fires?)
EDGES = [
    ("{field: customer.points, between: [5, 5]}", {"customer.points": 5}, True),
    ("{field: customer.points, between: [5, 5]}", {"customer.points": 4}, False),
    ("{field: customer.points, between: [5, 5]}", {"customer.points": 6}, False),
    ("{field: customer.points, between: [5, 7]}", {"customer.points": 5}, True),
    ("{field: customer.points, between: [5, 7]}", {"customer.points": 7}, True),
    ("{field: customer.points, between: [5, 7]}", {"customer.points": 8}, False),
    ("{field: customer.points, between: [5, 7]}", {"customer.points": 4}, False),
    ("{field: customer.lifetime_value, between: [2.5, 2.5]}", {"customer.lifetime_value": 2.5}, True),
    ("{field: customer.lifetime_value, between: [2.5, 2.5]}", {"customer.lifetime_value": 2.4999}, False),
    ("{field: customer.lifetime_value, between: [2.5, 2.5]}", {"customer.lifetime_value": 2.5001}, False),
    ("{field: customer.last_purchase_date, between: [2026-07-04, 2026-07-04]}",
     {"customer.last_purchase_date": "2026-07-04"}, True),
    ("{field: customer.last_purchase_date, between: [2026-07-04, 2026-07-04]}",
     {"customer.last_purchase_date": "2026-07-05"}, False),
    ("{field: customer.last_purchase_date, between: [2026-07-04, 2026-07-04]}",
     {"customer.last_purchase_date": "2026-07-03"}, False),
    ("{field: customer.points, gte: 10}", {"customer.points": 10}, True),
    ("{field: customer.points, gte: 10}", {"customer.points": 9}, False),
    ("{field: customer.points, gte: 10}", {"customer.points": 11}, True),
    ("{field: customer.points, gt: 10}", {"customer.points": 10}, False),
    ("{field: customer.points, gt: 10}", {"customer.points": 11}, True),
    ("{field: customer.points, lte: 10}", {"customer.points": 10}, True),
    ("{field: customer.points, lte: 10}", {"customer.points": 11}, False),
    ("{field: customer.points, lt: 10}", {"customer.points": 10}, False),
    ("{field: customer.points, lt: 10}", {"customer.points": 9}, True),
    ("{field: customer.lifetime_value, gte: 2.5}", {"customer.lifetime_value": 2.5}, True),
    ("{field: customer.lifetime_value, lte: 2.5}", {"customer.lifetime_value": 2.5}, True),
    ("{field: customer.last_purchase_date, gte: 2026-07-04}", {"customer.last_purchase_date": "2026-07-04"}, True),
    ("{field: customer.last_purchase_date, lte: 2026-07-04}", {"customer.last_purchase_date": "2026-07-04"}, True),
    ("{field: customer.last_purchase_date, gt: 2026-07-04}", {"customer.last_purchase_date": "2026-07-04"}, False),
    ("{field: customer.last_purchase_date, lt: 2026-07-04}", {"customer.last_purchase_date": "2026-07-04"}, False),
    ("{not: {field: customer.points, between: [5, 5]}}", {"customer.points": 5}, False),
    ("{not: {field: customer.points, between: [5, 5]}}", {"customer.points": 6}, True),
    ("{not: {field: customer.points, between: [5, 5]}}", {}, True),  # missing: the comparison is false
]


@pytest.mark.parametrize(("condition", "facts", "expected"), EDGES, ids=[str(i) for i in range(len(EDGES))])
def test_equal_and_inclusive_bounds(evaluator, catalogue, condition, facts, expected):
    rs = one_rule(catalogue, condition)
    assert evaluator.fired(rs, facts) == (("hit",) if expected else ())


def test_equal_bounds_hold_over_a_whole_audience_frame(catalogue):
    """The columnar evaluator's bulk path (one polars plan over many rows), not only one row at a time."""
    rs = one_rule(catalogue, "{field: customer.points, between: [5, 5]}")
    rows = [{"customer.points": p} for p in (4, 5, 6, None)]
    assert ColumnarEvaluator().fired_frame(rs, facts_frame(rows)) == [(), ("hit",), (), ()]


def test_a_range_with_equal_bounds_is_accepted_but_a_reversed_one_is_not(catalogue):
    rs = one_rule(catalogue, "{field: customer.points, between: [5, 5]}")
    assert rs.rules[0].when.value == (5, 5)


TIES = """\
ruleset: ties
kind: personalization
hit_policy: {policy}
rules:
  - id: {a}
    priority: 10
    when: {{field: customer.tier, eq: gold}}
    then: {{variant: {a}, vars: {{who: {a}}}}}
  - id: {b}
    priority: 10
    when: {{field: customer.tier, eq: gold}}
    then: {{variant: {b}, vars: {{who: {b}, only_{b}: true}}}}
  - id: late
    priority: 20
    when: {{field: customer.tier, eq: gold}}
    then: {{variant: late}}
  - id: early
    priority: 5
    when: {{field: customer.points, gt: 100}}
    then: {{variant: early}}
"""


@pytest.mark.parametrize(("a", "b"), [("alpha", "beta"), ("beta", "alpha")])
def test_equal_priorities_keep_file_order_under_first(evaluator, catalogue, a, b):
    rs = load_ruleset_data(TIES.format(policy="first", a=a, b=b), catalogue, kinds=KINDS, source="ties.yaml")
    assert [r.id for r in rs.rules] == ["early", a, b, "late"]
    assert evaluator.fired(rs, {"customer.tier": "gold"}) == (a,)
    assert evaluator.fired(rs, {"customer.tier": "gold", "customer.points": 101}) == ("early",)


@pytest.mark.parametrize(("a", "b"), [("alpha", "beta"), ("beta", "alpha")])
def test_equal_priorities_keep_file_order_under_collect(evaluator, catalogue, a, b):
    rs = load_ruleset_data(TIES.format(policy="collect", a=a, b=b), catalogue, kinds=KINDS, source="ties.yaml")
    fired = evaluator.fired(rs, {"customer.tier": "gold"})
    assert fired == (a, b, "late")
    result = KINDS[rs.kind].outcome([rs.rule(r).then for r in fired])
    assert result["variant"] == a
    # vars merge in firing order: the earlier rule wins a shared key, later rules add their own keys
    assert result["vars"] == {"who": a, f"only_{b}": True}


def test_an_operator_the_reference_does_not_know_is_an_error_naming_it():
    from engine.evaluators.reference import holds
    from engine.rulefiles.ir import Cmp

    with pytest.raises(ValueError, match="unknown operator 'near'"):
        holds(Cmp("customer.points", "near", 5), {"customer.points": 5})
