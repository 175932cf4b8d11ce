"""The durable-rules evaluator lives within durable's limits: sessions, action errors, versions, numbers."""

from __future__ import annotations

import hashlib
import threading

import pytest

from engine.errors import EvaluationError
from engine.evaluators import durable as durable_module
from engine.evaluators.durable import DurableEvaluator, dumps
from engine.rulefiles.ir import Always, Cmp, Rule, Ruleset


def make(name, *conds, policy="first"):
    rules = tuple(Rule(f"r{i}", i, c, {}) for i, c in enumerate(conds))
    version = hashlib.sha256(repr((name, rules, policy)).encode()).hexdigest()[:12]
    return Ruleset(name, "personalization", policy, rules, version)


def test_one_hundred_thousand_evaluations_never_reach_the_session_limit():
    # durable-rules allows 1,024 live sessions per ruleset, then breaks for good; sessions must be deleted.
    ev = DurableEvaluator()
    rs = make("soak", Cmp("customer.points", "gt", 5), Always())
    for i in range(100_000):
        expected = ("r0",) if i % 10 > 5 else ("r1",)
        assert ev.fired(rs, {"customer.points": i % 10}) == expected
    host = durable_module._host()
    ruleset = host.get_ruleset(rs.key)
    assert ruleset.get_state  # the ruleset is still healthy after the soak
    assert ev.fired(rs, {"customer.points": 9}) == ("r0",)


def test_action_errors_are_surfaced_not_swallowed(monkeypatch):
    def boom(rule_id):
        def action(c):
            raise RuntimeError(f"action for {rule_id} failed")

        return action

    monkeypatch.setattr(durable_module, "_action", boom)
    rs = make("raising", Always())
    with pytest.raises(EvaluationError, match="action for r0 failed") as info:
        DurableEvaluator().fired(rs, {})
    assert info.value.ruleset == "raising"


def test_two_versions_of_a_ruleset_live_side_by_side():
    old = make("versions", Cmp("customer.tier", "eq", "gold"))
    new = make("versions", Cmp("customer.tier", "eq", "silver"))
    ev = DurableEvaluator()
    assert old.key != new.key
    assert ev.fired(old, {"customer.tier": "gold"}) == ("r0",)
    assert ev.fired(new, {"customer.tier": "gold"}) == ()
    assert ev.fired(old, {"customer.tier": "gold"}) == ("r0",)


def test_rulesets_compile_to_durable_json_with_priorities_and_a_sentinel():
    rs = make("shape", Cmp("customer.tier", "in", ("gold", "platinum")), Always())
    definition = DurableEvaluator().definition(rs)[rs.key]
    assert definition["r0"] == {"pri": 0, "all": [{"m": {"$and": [{"_t": "e"}, {"$or": [
        {"customer.tier": "gold"}, {"customer.tier": "platinum"}]}]}}]}
    assert definition["__herald_sentinel__"]["pri"] == 3


def test_collect_asserts_a_fact_and_every_matching_rule_fires_in_order():
    rs = make("collect", Always(), Cmp("customer.points", "gte", 1), Cmp("customer.points", "gte", 100), policy="collect")
    assert DurableEvaluator().fired(rs, {"customer.points": 5}) == ("r0", "r1")


def test_numbers_durable_cannot_parse_are_sent_positionally():
    assert dumps({"a": 1e-05, "b": [2.5e-08], "c": "1e-05"}) == '{"a": 0.00001, "b": [0.000000025], "c": "1e-05"}'
    rs = make("tiny", Cmp("customer.ltv", "gt", 0))
    assert DurableEvaluator().fired(rs, {"customer.ltv": 1e-05}) == ("r0",)


def test_exponent_literals_are_refused_with_a_clear_error():
    with pytest.raises(EvaluationError, match="cannot read the number"):
        DurableEvaluator().fired(make("exp", Cmp("customer.ltv", "gt", 1e-09)), {})


def test_concurrent_evaluations_are_serialised_and_correct():
    rs = make("threads", Cmp("customer.points", "gt", 5), Always(), policy="collect")
    ev, errors = DurableEvaluator(), []

    def work(offset):
        for i in range(300):
            points = (i + offset) % 10
            want = ("r0", "r1") if points > 5 else ("r1",)
            got = ev.fired(rs, {"customer.points": points})
            if got != want:
                errors.append((points, got))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
