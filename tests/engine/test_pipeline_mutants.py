"""What the per-recipient pipeline promises, pinned where mutation testing found it unchecked: the trace's
``rules_fired`` lines, the ``rule_fired`` events, the error of a failing evaluator, an evaluator object
without ``bind`` (or answering with a list), the constructor's defaults and keywords, and the audience size
``run`` hands to the incentive's check."""

from __future__ import annotations

import types
from dataclasses import replace

import pytest

from engine import Customer, hookimpl
from engine.errors import EvaluationError, MessageFileError
from engine.pipeline import Pipeline
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from plugins import DEFAULT_PLUGINS
from tests.conftest import AT, EXAMPLES
from tests.engine.test_pipeline import GOLD

FRAUD = {**GOLD, "fraud_score": 0.95}


@pytest.fixture
def seen() -> list:
    return []


@pytest.fixture
def registry(seen) -> Registry:
    """The built-in plugins and an observer recording every engine event."""
    observer = types.ModuleType("observer")
    observer.engine_event = hookimpl(lambda event: seen.append(event))
    return Registry.build(make_plugin_manager((*DEFAULT_PLUGINS, observer), entry_points=False))


@pytest.fixture
def message(herald):
    return herald.load_message(EXAMPLES / "summer-sale.message.yaml")


def people():
    return [Customer("c1", GOLD), Customer("c2", FRAUD)]


def test_the_trace_names_each_ruleset_its_version_and_the_rules_that_fired(message, registry):
    gold, fraud = Pipeline(message, registry, at=AT, explain=True).run(people())
    v = {kind: rs.version for kind, rs in message.rulesets.items()}
    fired = [(t.step, dict(t.detail)) for t in gold.trace if t.event == "rules_fired"]
    assert fired == [
        ("eligibility", {"ruleset": "summer-sale-eligibility", "version": v["eligibility"], "fired": []}),
        ("personalization", {"ruleset": "summer-sale-personalization", "version": v["personalization"],
                             "fired": ["gold-electronics-evening"]}),
        ("channel_priority", {"ruleset": "summer-sale-channels", "version": v["channel_priority"],
                              "fired": ["default"]}),
    ]
    assert [(t.step, t.event, dict(t.detail)) for t in fraud.trace] == [
        ("eligibility", "rules_fired", {"ruleset": "summer-sale-eligibility", "version": v["eligibility"],
                                        "fired": ["high-fraud-score"]}),
        ("eligibility", "excluded", {"reason": "fraud_risk", "rule": "high-fraud-score"}),
    ]


def test_observers_get_one_rule_fired_event_per_fired_rule_and_every_decision(message, registry, seen):
    decisions = list(Pipeline(message, registry, at=AT).run(people()))
    v = {kind: rs.version for kind, rs in message.rulesets.items()}
    fired = [(e.customer, dict(e.detail)) for e in seen if e.kind == "rule_fired"]
    assert fired == [
        ("c1", {"kind": "personalization", "ruleset": "summer-sale-personalization", "version": v["personalization"],
                "rule": "gold-electronics-evening"}),
        ("c1", {"kind": "channel_priority", "ruleset": "summer-sale-channels", "version": v["channel_priority"],
                "rule": "default"}),
        ("c2", {"kind": "eligibility", "ruleset": "summer-sale-eligibility", "version": v["eligibility"],
                "rule": "high-fraud-score"}),
    ]
    made = [(e.customer, e.detail["decision"]) for e in seen if e.kind == "decision_made"]
    assert made == [("c1", decisions[0]), ("c2", decisions[1])]
    assert [e.kind for e in seen] == ["rule_fired", "rule_fired", "decision_made", "rule_fired", "decision_made"]


class Failing:
    """An evaluator object (no ``bind``) with a bug."""

    name = "failing"

    def fired(self, ruleset, facts):
        raise RuntimeError("boom")


def test_a_failing_evaluator_is_an_error_naming_the_ruleset(message, registry):
    with pytest.raises(EvaluationError) as err:
        list(Pipeline(message, registry, at=AT, evaluator=Failing()).run(people()))
    rs = message.rulesets["eligibility"]
    assert str(err.value) == f"evaluating {rs.key} failed: boom"
    assert err.value.ruleset == "summer-sale-eligibility"
    assert isinstance(err.value.__cause__, RuntimeError)


class Listing:
    """An evaluator object without ``bind`` answering with lists: the registered reference one's answers."""

    name = "listing"

    def __init__(self, registry):
        self.reference = registry.evaluator("reference")
        self.calls = []

    def fired(self, ruleset, facts):
        self.calls.append((ruleset.name, facts["customer.id"]))
        return list(self.reference.fired(ruleset, facts))


def test_an_evaluator_object_without_bind_is_asked_per_ruleset_and_recipient(message, registry):
    listing = Listing(registry)
    got = list(Pipeline(message, registry, at=AT, evaluator=listing).run(people() * 2))
    want = list(Pipeline(message, registry, at=AT, evaluator="reference").run(people() * 2))
    assert [(d.variant, d.channel, d.fallbacks, d.excluded_reason) for d in got] == [
        (d.variant, d.channel, d.fallbacks, d.excluded_reason) for d in want]
    assert [{k: list(v) for k, v in d.fired.items()} for d in got] == [
        {k: list(v) for k, v in d.fired.items()} for d in want]
    assert listing.calls[:4] == [("summer-sale-eligibility", "c1"), ("summer-sale-personalization", "c1"),
                                 ("summer-sale-channels", "c1"), ("summer-sale-eligibility", "c2")]


def test_the_defaults_are_the_compiled_evaluator_no_trace_no_rendering_a_preview_in_utc(message, registry, seen):
    plain = {**GOLD}
    del plain["timezone"]  # the run's default zone decides the local time: 13:30 UTC is not the evening
    default = [d.as_dict() for d in Pipeline(message, registry, at=AT).run([Customer("c1", plain)])]
    explicit = [d.as_dict() for d in Pipeline(message, registry, at=AT, evaluator="compiled", explain=False,
                                              render=False, preview=True, default_tz="UTC")
                .run([Customer("c1", plain)])]
    assert default == explicit
    (d,) = default
    assert (d["variant"], d["trace"], d["rendered"], d["incentive"]["preview"]) == ("gold", [], None, True)
    assert "incentive_reserved" not in [e.kind for e in seen]  # a preview reserves nothing
    kolkata = Pipeline(message, registry, at=AT, default_tz="Asia/Kolkata").decide(Customer("c1", plain))
    assert kolkata.variant == "gold_evening"  # 19:00 there


def test_the_keywords_take_effect(message, registry, seen):
    (d,) = Pipeline(message, registry, at=AT, explain=True, render=True, preview=False).run([Customer("c1", GOLD)])
    assert d.rendered["channel"] == "sms" and d.incentive["code"] in d.rendered["payload"]["text"]
    assert d.incentive["preview"] is False and d.trace[-1].event == "reserved"
    reserved = [e for e in seen if e.kind == "incentive_reserved"]
    assert [(e.customer, dict(e.detail)) for e in reserved] == [("c1", {"kind": "coupon", "grant": d.incentive})]


def test_run_tells_the_incentive_how_many_recipients_there_are(message, registry):
    small = replace(message, incentive=replace(message.incentive, settings={
        "source": "generated", "alphabet": "numeric", "length": 1, "expiry": {"days": 14}}))
    eleven = [Customer(f"c{i}", GOLD) for i in range(11)]
    with pytest.raises(MessageFileError, match="the incentive cannot serve this run"):
        next(Pipeline(small, registry, at=AT).run(eleven))
    with pytest.raises(MessageFileError, match="the incentive cannot serve this run"):
        next(Pipeline(small, registry, at=AT).run(iter(eleven), size=11))
    # ten fit; an iterator of unknown size is not refused up front
    assert len(list(Pipeline(small, registry, at=AT).run(eleven[:10]))) == 10
    assert next(Pipeline(small, registry, at=AT).run(iter(eleven))).included


def with_plugin(**hooks) -> Registry:
    extra = types.ModuleType("extra")
    for name, fn in hooks.items():
        setattr(extra, name, hookimpl(fn))
    return Registry.build(make_plugin_manager((*DEFAULT_PLUGINS, extra), entry_points=False))


def test_the_send_history_reaches_the_frequency_cap(registry):
    from tests.plugins.optimizers.test_frequency_cap import ANA
    from tests.plugins.optimizers.test_frequency_cap import message as capped

    history = {"ana": [{"channel": "sms", "sent_at": "2026-07-04T08:00:00+00:00"}]}
    assert Pipeline(capped(), registry, at=AT).decide(ANA).channel == "sms"
    assert Pipeline(capped(), registry, at=AT, history=history).decide(ANA).channel == "email"  # one SMS a day


def test_enrich_facts_is_told_the_message(message):
    asked = []

    def enrich_facts(customer, message):
        asked.append((customer.id, message.id))

    registry = with_plugin(enrich_facts=enrich_facts)
    list(Pipeline(message, registry, at=AT).run(people()))
    assert asked == [("c1", "summer-sale-2026"), ("c2", "summer-sale-2026")]


class ExcludeAll:
    """An optimizer that would exclude everyone, active only for messages it is told about."""

    name, order = "exclude_all", 50

    def __init__(self, message_id):
        self.message_id = message_id

    def active(self, message):
        return message.id == self.message_id

    def apply(self, draft, ctx):
        draft.exclude("excluded_by_test", self.name)


def test_an_optimizer_not_active_for_the_message_does_not_run(message):
    asleep = with_plugin(register_optimizers=lambda register: register(ExcludeAll("another-message")))
    awake = with_plugin(register_optimizers=lambda register: register(ExcludeAll(message.id)))
    assert Pipeline(message, asleep, at=AT).decide(Customer("c1", GOLD)).included
    assert Pipeline(message, awake, at=AT).decide(Customer("c1", GOLD)).excluded_reason == "excluded_by_test"
