"""What the per-recipient pipeline promises observers, explanations and callers, pinned whole (these were the
surviving mutants of engine/pipeline.py): the ``rules_fired`` note, the ``rule_fired`` events, a failing
evaluator's error, ``enrich_facts``, and the defaults of ``Herald.evaluate``."""

from __future__ import annotations

import pytest

from engine import Customer, EngineEvent, hookimpl
from engine.errors import EvaluationError
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.runtime import Herald
from engine.stores import InMemoryLedgerStore
from plugins import DEFAULT_PLUGINS
from tests.conftest import AT, EXAMPLES

GOLD = Customer("g1", {"tier": "gold", "affinities": ["electronics"], "phone": "+919818427393", "timezone": "Asia/Kolkata",
                       "lifetime_value": 900.0, "last_purchase_date": "2026-05-01"})


class Observer:
    """Records every engine event and the messages ``enrich_facts`` was asked about."""

    def __init__(self, extra=None):
        self.events: list[EngineEvent] = []
        self.asked: list[str] = []
        self.extra = extra or {}

    @hookimpl
    def engine_event(self, event):
        self.events.append(event)

    @hookimpl
    def enrich_facts(self, customer, message):
        self.asked.append(message.id)
        return self.extra


def herald_with(plugin, catalogue) -> Herald:
    return Herald(Registry.build(make_plugin_manager((*DEFAULT_PLUGINS, plugin), entry_points=False)), catalogue)


def sample(herald: Herald):
    return herald.load_message(EXAMPLES / "summer-sale.message.yaml")


def test_the_rules_fired_note_names_the_ruleset_its_version_and_the_fired_rules(herald):
    message = sample(herald)
    (decision,) = herald.evaluate(message, [GOLD], at=AT, mode="per_recipient", explain=True)
    notes = [(t.step, dict(t.detail)) for t in decision.trace if t.event == "rules_fired"]
    assert notes == [(kind, {"ruleset": message.rulesets[kind].name, "version": message.rulesets[kind].version,
                             "fired": list(decision.fired[message.rulesets[kind].name])})
                     for kind in ("eligibility", "personalization", "channel_priority")]


def test_by_default_a_run_explains_renders_and_reserves_nothing(herald):
    message = sample(herald)
    (decision,) = herald.evaluate(message, [GOLD], at=AT, mode="per_recipient")
    assert decision.included and decision.trace == () and decision.rendered is None
    assert decision.incentive is not None and herald.registry.ledger.count() == 0  # previewed, not taken


def test_a_real_run_reserves_in_the_ledger_store_it_is_given(herald):
    message = sample(herald)
    store = InMemoryLedgerStore()
    (decision,) = herald.evaluate(message, [GOLD], at=AT, mode="per_recipient", preview=False, ledger=store)
    assert decision.included and store.count() == 1 and herald.registry.ledger.count() == 0


def test_every_fired_rule_is_one_rule_fired_event_with_its_ruleset_and_version(catalogue):
    observer = Observer()
    herald = herald_with(observer, catalogue)
    message = sample(herald)
    (decision,) = herald.evaluate(message, [GOLD], at=AT, mode="per_recipient")
    fired = [(e.customer, dict(e.detail)) for e in observer.events if e.kind == "rule_fired"]
    expected = [("g1", {"kind": kind, "ruleset": rs.name, "version": rs.version, "rule": rule})
                for kind, rs in message.rulesets.items() if kind != "audience_filter"
                for rule in decision.fired[rs.name]]
    assert fired == expected and fired  # the gold evening customer fires personalization and channel rules
    assert observer.asked == [message.id]  # enrich_facts is asked once per recipient, with the message


def test_enrich_facts_may_not_overwrite_a_fact(catalogue):
    herald = herald_with(Observer({"customer.tier": "silver"}), catalogue)
    with pytest.raises(EvaluationError, match=r"^enrich_facts returned 'customer.tier', which is already a fact$"):
        list(herald.evaluate(sample(herald), [GOLD], at=AT, mode="per_recipient"))


class Broken:
    """An evaluator with a bug."""

    name = "broken"

    def fired(self, ruleset, facts):
        raise RuntimeError("boom")


def test_a_failing_evaluator_names_the_ruleset(herald):
    message = sample(herald)
    with pytest.raises(EvaluationError) as info:
        list(herald.evaluate(message, [GOLD], at=AT, mode="per_recipient", evaluator=Broken()))
    first = message.rulesets["eligibility"]
    assert str(info.value) == f"evaluating {first.key} failed: boom"
    assert info.value.ruleset == first.name


def test_a_pipeline_built_with_its_defaults_previews_without_trace_or_rendering(herald):
    from engine.pipeline import Pipeline

    decision = Pipeline(sample(herald), herald.registry, at=AT).decide(GOLD)
    assert decision.included and decision.trace == () and decision.rendered is None
    assert decision.incentive is not None and herald.registry.ledger.count() == 0


@pytest.mark.parametrize(("default_tz", "variant"), [(None, "gold"), ("UTC", "gold"), ("Asia/Kolkata", "gold_evening")])
def test_a_customer_without_a_zone_is_decided_in_the_default_zone(herald, default_tz, variant):
    """13:30 UTC is 19:00 in Kolkata: the evening variant only when the default zone is Kolkata (UTC by default)."""
    zoneless = Customer("z1", {k: v for k, v in GOLD.attributes.items() if k != "timezone"})
    options = {} if default_tz is None else {"default_tz": default_tz}
    (decision,) = herald.evaluate(sample(herald), [zoneless], at=AT, mode="per_recipient", **options)
    assert decision.variant == variant
