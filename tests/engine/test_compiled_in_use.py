"""The compiled evaluator really runs compiled code: it never silently hands a ruleset to the reference
evaluator (which would hide a broken code generator behind correct-looking answers)."""

from __future__ import annotations

import hashlib

import pytest

from engine import Customer
from engine.evaluators import compiled as compiled_module
from engine.evaluators import get_evaluator
from engine.evaluators.compiled import CompiledEvaluator, compile_ruleset
from engine.pipeline import Pipeline
from engine.rulefiles.ir import Always, Cmp, Rule, Ruleset

from ..conftest import AT, EXAMPLES
from .test_evaluators import CASES
from .test_pipeline import GOLD


class _NoOracle:
    """Stands in for the reference evaluator inside the compiled one: any use is a test failure."""

    name = "reference"

    def fired(self, ruleset, facts):
        raise AssertionError(f"the compiled evaluator fell back to the reference for {ruleset.key} on {facts}")


def ruleset(*conds, policy="first", name="t"):
    rules = tuple(Rule(f"r{i}", i, c, {"variant": f"v{i}"}) for i, c in enumerate(conds))
    version = hashlib.sha256(repr((rules, policy)).encode()).hexdigest()[:12]
    return Ruleset(name, "personalization", policy, rules, version)


def compiled_only() -> CompiledEvaluator:
    ev = CompiledEvaluator()
    ev._oracle = _NoOracle()
    return ev


@pytest.mark.parametrize(("cond", "facts", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_every_operator_is_answered_by_compiled_code(cond, facts, expected):
    ev = compiled_only()
    for policy in ("first", "collect"):
        assert ev.fired(ruleset(cond, policy=policy), facts) == (("r0",) if expected else ())
    assert ev.fallbacks == 0


def test_the_compiled_function_is_built_once_per_ruleset_version(monkeypatch):
    built = []

    def counting(rs):
        built.append(rs.key)
        return compile_ruleset(rs)

    monkeypatch.setattr(compiled_module, "compile_ruleset", counting)
    ev = CompiledEvaluator()
    rs = ruleset(Cmp("customer.tier", "eq", "gold"))
    for _ in range(3):
        assert ev.fired(rs, {"customer.tier": "gold"}) == ("r0",)
    assert ev.function(rs) is ev.function(rs)
    other = ruleset(Cmp("customer.tier", "eq", "silver"))  # another version of the same ruleset name
    assert ev.fired(other, {"customer.tier": "silver"}) == ("r0",)
    assert ev.fired(rs, {"customer.tier": "silver"}) == ()
    assert built == [rs.key, other.key]


def test_a_ruleset_that_cannot_compile_is_an_error_not_a_silent_fallback():
    ev = CompiledEvaluator()
    unhashable = ruleset(Always(), Cmp("customer.tier", "in", (["gold"],)))
    with pytest.raises(ValueError, match=r"cannot compile rule 'r1' of ruleset t@"):
        ev.fired(unhashable, {"customer.tier": "gold"})
    assert ev.fallbacks == 0


def test_a_code_generator_bug_surfaces_instead_of_being_answered_by_the_reference(monkeypatch):
    def broken(rs):
        raise TypeError("generated code is broken")

    monkeypatch.setattr(compiled_module, "compile_ruleset", broken)
    with pytest.raises(TypeError, match="generated code is broken"):
        CompiledEvaluator().fired(ruleset(Always()), {})


def test_a_fact_of_the_wrong_type_falls_back_visibly_with_the_oracles_answer():
    ev = CompiledEvaluator()
    rs = ruleset(Cmp("customer.points", "gt", 5), Always(), policy="collect")
    assert ev.fired(rs, {"customer.points": "many"}) == ("r1",)
    assert ev.fallbacks == 1
    assert ev.fired(rs, {"customer.points": 6}) == ("r0", "r1")
    assert ev.fallbacks == 1
    assert ev.fired(ruleset(Cmp("customer.tier", "in", ("a",))), {"customer.tier": ["a"]}) == ()  # unhashable
    assert ev.fallbacks == 2


def test_the_pipeline_decides_with_compiled_code_by_default(herald, registry, monkeypatch):
    """The default evaluator of a preview is the compiled one, and it never consults the reference."""
    message = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    customers = [Customer("c1", GOLD), Customer("c2", {**GOLD, "tier": "silver"}),
                 Customer("c3", {**GOLD, "fraud_score": 0.99})]
    expected = [d.as_dict() for d in Pipeline(message, registry, at=AT, evaluator="reference").run(customers)]
    from engine.evaluators import reference

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference evaluator was used")

    monkeypatch.setattr(reference.ReferenceEvaluator, "fired", no_reference)
    monkeypatch.setattr(reference, "holds", no_reference)
    pipeline = Pipeline(message, registry, at=AT)
    assert pipeline.evaluator.name == "compiled"
    decisions = list(pipeline.run(customers))
    assert [d.as_dict() for d in decisions] == expected
    assert [(d.included, d.variant) for d in decisions] == [(True, "gold_evening"), (True, "generic"), (False, None)]
    assert pipeline.evaluator.fallbacks == 0
    assert sorted(pipeline.evaluator._cache) == sorted(rs.key for rs in message.rulesets.values())


def test_the_registry_gives_the_compiled_evaluator_under_its_name():
    ev = get_evaluator("compiled")
    assert isinstance(ev, CompiledEvaluator) and ev.name == "compiled"
    assert get_evaluator().name == "compiled"  # the default
