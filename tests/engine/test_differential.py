"""Differential test: random IR conditions × random customers give identical fired lists everywhere."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.evaluators import get_evaluator
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Not, Rule, Ruleset

FIELDS = {
    "customer.tier": "string",
    "customer.city": "string",
    "customer.points": "integer",
    "customer.ltv": "number",
    "customer.dnd": "boolean",
    "customer.affinities": "list",
    "customer.last_purchase_date": "date",
    "time.local_hour": "integer",
}
WORDS = ["gold", "silver", "é", "", "a b", "Gold"]
DATES = ["2025-12-31", "2026-01-01", "2026-07-04"]
REGEXES = ["g.*", "[a-z]+", "", "gold|silver", "é?"]

values = {
    "string": st.sampled_from(WORDS),
    "integer": st.integers(-3, 24),
    "number": st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False, allow_infinity=False),
                        st.sampled_from([5e-324, 1e-05, -2.5e-08, 0.1, -0.0])),
    "boolean": st.booleans(),
    "list": st.lists(st.sampled_from(WORDS), max_size=3),
    "date": st.sampled_from(DATES),
}
# literals as a marketer writes them (durable-rules cannot read exponent notation in a ruleset; see durable.py)
scalars = {k: v for k, v in values.items() if k != "list"}
scalars["number"] = st.one_of(st.integers(-3, 3), st.floats(-3, 3).map(lambda x: round(x, 3)))
ORDERED = ("integer", "number", "date")


@st.composite
def comparison(draw):
    field = draw(st.sampled_from(sorted(FIELDS)))
    ftype = FIELDS[field]
    ops = ["exists", "missing"]
    if ftype == "list":
        ops += ["contains", "contains_any"]
    else:
        ops += ["eq", "ne", "in", "not_in"]
        if ftype in ORDERED:
            ops += ["lt", "lte", "gt", "gte", "between"]
        if ftype == "string":
            ops += ["matches"]
    op = draw(st.sampled_from(ops))
    if op in ("exists", "missing"):
        return Cmp(field, op, True)
    if op == "contains":
        return Cmp(field, op, draw(st.sampled_from(WORDS)))
    if op == "contains_any":
        return Cmp(field, op, tuple(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))))
    if op == "matches":
        return Cmp(field, op, draw(st.sampled_from(REGEXES)))
    if op in ("in", "not_in"):
        return Cmp(field, op, tuple(draw(st.lists(scalars[ftype], min_size=1, max_size=3))))
    if op == "between":
        a, b = draw(scalars[ftype]), draw(scalars[ftype])
        return Cmp(field, op, (min(a, b), max(a, b)))
    return Cmp(field, op, draw(scalars[ftype]))


conditions = st.recursive(
    st.one_of(comparison(), st.just(Always())),
    lambda inner: st.one_of(
        st.builds(lambda xs: All(tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: AnyOf(tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(Not, inner),
    ),
    max_leaves=6,
)


@st.composite
def rulesets(draw):
    conds = draw(st.lists(conditions, min_size=1, max_size=4))
    priorities = draw(st.lists(st.integers(0, 5), min_size=len(conds), max_size=len(conds)))
    rules = tuple(sorted((Rule(f"r{i}", p, c, {}) for i, (c, p) in enumerate(zip(conds, priorities, strict=True))),
                         key=lambda r: r.priority))
    policy = draw(st.sampled_from(["first", "collect"]))
    version = hashlib.sha256(repr((rules, policy)).encode()).hexdigest()[:12]
    return Ruleset("diff", "personalization", policy, rules, version)


@st.composite
def fact_sets(draw):
    facts = {}
    for field, ftype in FIELDS.items():
        choice = draw(st.sampled_from(["absent", "null", "value", "value"]))
        if choice == "null":
            facts[field] = None
        elif choice == "value":
            facts[field] = draw(values[ftype])
    return facts


EVALUATORS = {name: get_evaluator(name) for name in ("reference", "compiled", "durable")}


@settings(max_examples=int(__import__("os").environ.get("HERALD_DIFF_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rulesets(), st.lists(fact_sets(), min_size=1, max_size=4))
def test_all_evaluators_fire_the_same_rules(ruleset, customers):
    for facts in customers:
        results = {name: ev.fired(ruleset, facts) for name, ev in EVALUATORS.items()}
        assert results["compiled"] == results["reference"], (ruleset, facts)
        assert results["durable"] == results["reference"], (ruleset, facts)
