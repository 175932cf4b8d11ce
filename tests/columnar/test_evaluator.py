"""The columnar evaluator gives the reference evaluator's fired lists: random IR × random audiences."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.evaluators.columnar import ColumnarEvaluator, facts_frame
from engine.evaluators.reference import ReferenceEvaluator
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Not, Rule, Ruleset
from engine.rulefiles.outcome import run_rule_tests

from ..conftest import EXAMPLES

# field → (type, value strategy); nulls and absent fields are added by the audience strategy
WORDS = st.sampled_from(["gold", "silver", "", "Gold", "gold ", "é", "a.b", "x1"])
FIELDS = {
    "customer.tier": ("string", WORDS),
    "customer.points": ("integer", st.integers(-5, 5)),
    "customer.ltv": ("number", st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False))),
    "customer.vip": ("boolean", st.booleans()),
    "customer.tags": ("list", st.lists(WORDS, max_size=3)),
    "customer.seen": ("date", st.sampled_from(["2025-01-01", "2026-05-01", "2024-12-31"])),
    "time.local_hour": ("integer", st.integers(0, 23)),
}
ABSENT = "customer.never"  # a field no row has


def literal(ftype: str) -> st.SearchStrategy:
    """A literal of the field's type, or sometimes of another type (Python semantics then apply)."""
    own = FIELDS[next(k for k, v in FIELDS.items() if v[0] == ftype)][1] if ftype != "list" else WORDS
    return st.one_of(own, own, own, st.sampled_from([0, 1, True, "3", 2.5]))


@st.composite
def comparison(draw):
    field = draw(st.sampled_from([*FIELDS, ABSENT]))
    ftype = FIELDS.get(field, ("string",))[0]
    op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains",
                               "contains_any", "matches", "exists", "missing"]))
    lit = literal(ftype)
    if op in ("in", "not_in", "contains_any"):
        value = tuple(draw(st.lists(lit, min_size=1, max_size=3)))
    elif op == "between":
        value = tuple(sorted(draw(st.lists(st.integers(-4, 23), min_size=2, max_size=2))))
    elif op == "matches":
        value = draw(st.sampled_from(["g.*", "[a-z]+", "", "gold|silver", r"\w\d", "a\\.b"]))
    elif op in ("exists", "missing"):
        value = True
    else:
        value = draw(lit)
    return Cmp(field, op, value)


conditions = st.recursive(
    st.one_of(comparison(), st.just(Always())),
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(lambda xs: All(tuple(xs))),
                            st.lists(inner, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
                            inner.map(Not)),
    max_leaves=6,
)


@st.composite
def rulesets(draw):
    conds = draw(st.lists(conditions, min_size=1, max_size=5))
    policy = draw(st.sampled_from(["first", "collect"]))
    rules = tuple(Rule(f"r{i}", i, c, {}) for i, c in enumerate(conds))
    return Ruleset("rs", "personalization", policy, rules, "v1")


@st.composite
def audiences(draw):
    """Rows with every field present, null or absent (absent fields are null columns in the frame)."""
    n = draw(st.integers(1, 8))
    present = draw(st.lists(st.sampled_from(list(FIELDS)), unique=True))
    rows = []
    for _ in range(n):
        row = {}
        for f in present:
            if draw(st.booleans()) or draw(st.booleans()):
                row[f] = draw(FIELDS[f][1])
            else:
                row[f] = None
        rows.append(row)
    return rows


def _typed_frame(rows):
    import polars as pl

    frame = facts_frame(rows)
    casts = {f: {"integer": pl.Int64, "number": pl.Float64}[FIELDS[f][0]]
             for f in frame.columns if f in FIELDS and FIELDS[f][0] in ("integer", "number")}
    return frame.with_columns([pl.col(f).cast(t) for f, t in casts.items()])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rulesets(), audiences())
def test_random_conditions_match_reference(ruleset, rows):
    ref = ReferenceEvaluator()
    expected = [ref.fired(ruleset, {k: v for k, v in row.items() if v is not None}) for row in rows]
    assert ColumnarEvaluator().fired_frame(ruleset, _typed_frame(rows)) == expected


def test_missing_and_null_are_false_even_for_ne():
    rs = Ruleset("rs", "personalization", "collect", (
        Rule("ne", 1, Cmp("customer.tier", "ne", "gold"), {}),
        Rule("not_ne", 2, Not(Cmp("customer.tier", "ne", "gold")), {}),
        Rule("missing", 3, Cmp("customer.tier", "missing", True), {}),
    ), "v")
    got = ColumnarEvaluator().fired_frame(rs, facts_frame([{"customer.tier": None}, {"customer.tier": "x"}, {}]))
    assert got == [("not_ne", "missing"), ("ne",), ("not_ne", "missing")]


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.yaml") if ".message." not in p.name),
                         ids=lambda p: p.name)
def test_rule_file_examples_pass_through_columnar(path, herald):
    ruleset = herald.load_ruleset(path)
    assert ruleset.tests, "every example rule file has tests"
    assert run_rule_tests(ruleset, ColumnarEvaluator(), herald.registry.kinds) == []
