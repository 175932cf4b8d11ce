"""Semantics every evaluator shares, pinned down case by case (the oracle is the reference evaluator)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.evaluators import EVALUATORS, get_evaluator
from engine.facts import FactBuilder, time_facts, zone
from engine.model import Customer
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Not, Rule, Ruleset


def ruleset(*conds, policy="first"):
    rules = tuple(Rule(f"r{i}", i, c, {"variant": f"v{i}"}) for i, c in enumerate(conds))
    import hashlib

    version = hashlib.sha256(repr((rules, policy)).encode()).hexdigest()[:12]
    return Ruleset("t", "personalization", policy, rules, version)


@pytest.fixture(params=EVALUATORS)
def evaluator(request):
    return get_evaluator(request.param)


def fires(evaluator, cond, facts):
    return evaluator.fired(ruleset(cond), facts) == ("r0",)


CASES = [
    # (condition, facts, fires?)
    (Cmp("customer.tier", "eq", "gold"), {"customer.tier": "gold"}, True),
    (Cmp("customer.tier", "eq", "gold"), {}, False),
    (Cmp("customer.tier", "ne", "gold"), {}, False),  # missing is false, ne included
    (Cmp("customer.tier", "ne", "gold"), {"customer.tier": None}, False),
    (Cmp("customer.tier", "ne", "gold"), {"customer.tier": "silver"}, True),
    (Not(Cmp("customer.tier", "eq", "gold")), {}, True),
    (Not(Cmp("customer.tier", "ne", "gold")), {}, True),
    (Cmp("customer.points", "lt", 10), {"customer.points": 9}, True),
    (Cmp("customer.points", "lt", 10), {"customer.points": 10}, False),
    (Cmp("customer.points", "lte", 10), {"customer.points": 10}, True),
    (Cmp("customer.points", "gt", 10), {"customer.points": 10.5}, True),
    (Cmp("customer.points", "gte", 10), {}, False),
    (Cmp("time.local_hour", "between", (18, 22)), {"time.local_hour": 18}, True),
    (Cmp("time.local_hour", "between", (18, 22)), {"time.local_hour": 22}, True),
    (Cmp("time.local_hour", "between", (18, 22)), {"time.local_hour": 23}, False),
    (Not(Cmp("time.local_hour", "between", (18, 22))), {}, True),
    (Cmp("customer.tier", "in", ("gold", "platinum")), {"customer.tier": "platinum"}, True),
    (Cmp("customer.tier", "in", ("gold", "platinum")), {}, False),
    (Cmp("customer.tier", "not_in", ("gold",)), {}, False),
    (Cmp("customer.tier", "not_in", ("gold",)), {"customer.tier": "bronze"}, True),
    (Not(Cmp("customer.tier", "not_in", ("gold",))), {}, True),
    (Cmp("customer.affinities", "contains", "shoes"), {"customer.affinities": ["shoes", "bags"]}, True),
    (Cmp("customer.affinities", "contains", "shoes"), {"customer.affinities": []}, False),
    (Not(Cmp("customer.affinities", "contains", "shoes")), {"customer.affinities": []}, True),
    (Not(Cmp("customer.affinities", "contains", "shoes")), {"customer.affinities": ["shoes"]}, False),
    (Cmp("customer.affinities", "contains_any", ("a", "shoes")), {"customer.affinities": ["shoes"]}, True),
    (Cmp("customer.affinities", "contains_any", ("a", "b")), {"customer.affinities": ["shoes"]}, False),
    (Not(Cmp("customer.affinities", "contains_any", ("a", "b"))), {"customer.affinities": ["shoes"]}, True),
    (Cmp("customer.email", "matches", r".*@example\.com"), {"customer.email": "a@example.com"}, True),
    (Cmp("customer.email", "matches", "example"), {"customer.email": "a@example.com"}, False),  # full match
    (Not(Cmp("customer.email", "matches", "x.*")), {}, True),
    (Cmp("customer.email", "exists", True), {"customer.email": "a@b.co"}, True),
    (Cmp("customer.email", "exists", True), {"customer.email": None}, False),
    (Cmp("customer.email", "missing", True), {}, True),
    (Cmp("customer.dnd", "eq", False), {"customer.dnd": False}, True),
    (Cmp("time.date", "lt", "2026-07-05"), {"time.date": "2026-07-04"}, True),
    (All((Cmp("customer.tier", "eq", "gold"), Always())), {"customer.tier": "gold"}, True),
    (AnyOf((Cmp("customer.tier", "eq", "gold"), Cmp("customer.points", "gt", 5))), {"customer.points": 6}, True),
    (Not(AnyOf((Cmp("customer.tier", "eq", "gold"), Cmp("customer.points", "gt", 5)))), {}, True),
    (Not(Always()), {}, False),
]


@pytest.mark.parametrize(("cond", "facts", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_operator_semantics(evaluator, cond, facts, expected):
    assert fires(evaluator, cond, facts) is expected


def test_first_returns_the_lowest_priority_match_and_collect_all_in_order(evaluator):
    conds = (Cmp("customer.tier", "eq", "gold"), Always(), Cmp("customer.points", "gt", 1))
    facts = {"customer.tier": "gold", "customer.points": 5}
    assert evaluator.fired(ruleset(*conds, policy="first"), facts) == ("r0",)
    assert evaluator.fired(ruleset(*conds, policy="collect"), facts) == ("r0", "r1", "r2")
    assert evaluator.fired(ruleset(conds[0], conds[2], policy="collect"), {}) == ()


def test_a_value_of_the_wrong_type_never_matches_and_never_raises():
    rs = ruleset(Cmp("customer.points", "gt", 5), Always())
    for name in ("compiled", "reference"):
        assert get_evaluator(name).fired(rs, {"customer.points": "many"}) == ("r1",)


def test_time_facts_follow_the_customers_zone_and_dst():
    # 2026-03-08 is the US spring-forward day: 06:59 UTC is 01:59 EST; 07:00 UTC is 03:00 EDT.
    ny = zone("America/New_York")
    assert time_facts(datetime(2026, 3, 8, 6, 59, tzinfo=UTC), ny)["time.local_hour"] == 1
    assert time_facts(datetime(2026, 3, 8, 7, 0, tzinfo=UTC), ny)["time.local_hour"] == 3
    # Kolkata is +05:30 all year; 20:00 UTC on a Saturday is 01:30 on Sunday there.
    kol = time_facts(datetime(2026, 7, 4, 20, 0, tzinfo=UTC), zone("Asia/Kolkata"))
    assert kol == {"time.local_hour": 1, "time.local_minute": 30, "time.weekday": "sun", "time.date": "2026-07-05"}


def test_fact_builder_uses_the_default_zone_for_unknown_or_missing_zones():
    builder = FactBuilder(datetime(2026, 7, 4, 13, 30, tzinfo=UTC), {"message.id": "m"})
    assert builder.facts(Customer("a", {"timezone": "Mars/Olympus"}))["time.local_hour"] == 13
    facts = builder.facts(Customer("b", {"timezone": "Asia/Tokyo", "tier": "gold", "email": None}))
    assert facts["time.local_hour"] == 22 and facts["customer.tier"] == "gold" and "customer.email" not in facts
    assert facts["message.id"] == "m" and facts["customer.id"] == "b"


def test_naive_evaluation_times_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        FactBuilder(datetime(2026, 7, 4, 13, 30), {})


def test_compiled_code_treats_field_names_and_literals_as_data():
    from engine.evaluators.compiled import compile_ruleset

    sneaky = '"); import os; os.system("echo pwned") #'
    fn = compile_ruleset(ruleset(Cmp("customer.note", "eq", sneaky), Cmp("customer.x", "in", ("a'b", 'c"d'))))
    assert fn({"customer.note": sneaky}) == ("r0",)
    assert fn({"customer.x": 'c"d'}) == ("r1",)
    with pytest.raises(ValueError, match="invalid field name"):
        compile_ruleset(ruleset(Cmp("customer.x) or __import__('os') or (1", "eq", 1)))
    with pytest.raises(ValueError, match="cannot compile"):
        compile_ruleset(ruleset(Cmp("customer.x", "__import__", 1)))
