"""The plugin system: a fresh manager per call, allow/block lists, attribution, duplicates, and every hook.

Each hook has a ``test_hook_<name>`` here; ``test_every_hook_is_documented_and_tested`` keeps it so.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import Creative, Customer, Issue, Reachability, SendResult, hookimpl
from engine import hookspecs as specs
from engine.errors import PluginConflict
from engine.events import EngineEvent
from engine.fields import build_catalogue
from engine.model import Campaign, Message
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.run import evaluate
from plugins import DEFAULT_PLUGINS

AT = datetime(2026, 7, 4, 12, tzinfo=UTC)


class Pigeon:
    """A tiny channel for tests."""

    kind = "direct"
    cost = 0.5
    creative_schema = {"type": "object"}
    tags = {"optout": "coo to stop"}
    required_tags = ()

    def __init__(self, name="pigeon"):
        self.name = name

    def validate(self, creative, message):
        return []

    def reachability(self, customer, message):
        return Reachability.VALID if customer.get("loft") else Reachability.CONTACT_UNAVAILABLE

    def render(self, creative, context):
        return {"note": creative.content["note"]}

    async def send(self, payload, ctx):
        return SendResult.accepted(f"coo-{ctx.customer_id}")


def plugin(name, **hooks):
    """A plugin module named ``name`` with the given hook implementations."""
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


def message(**kw):
    base = dict(id="m1", title="t", campaign=Campaign("c1"), creatives=(Creative("pigeon", "default", {"note": "hi"}),))
    base.update(kw)
    return Message(**base)


def registry_with(*plugins):
    return Registry.build(make_plugin_manager(("plugins.optimizers.channel_priority", *plugins), entry_points=False))


def channels_plugin(*names):
    return plugin(f"p_{'_'.join(names)}", register_channels=lambda register: [register(Pigeon(n)) for n in names])


def test_every_hook_is_documented_and_tested():
    hooks = [n for n, f in inspect.getmembers(specs, inspect.isfunction) if hasattr(f, "herald_spec")]
    assert len(hooks) >= 7
    source = Path(__file__).read_text(encoding="utf-8")
    for name in hooks:
        assert (getattr(specs, name).__doc__ or "").strip(), f"hook {name} has no docstring"
        assert re.search(rf"^def test_hook_{name}[_(]", source, re.M), f"hook {name} has no test_hook_{name}"


def test_hook_register_channels_records_the_owner(registry):
    reg = registry_with(channels_plugin("pigeon"))
    assert reg.channels["pigeon"].owner == "p_pigeon"
    assert registry.channels["sms"].owner == "plugins.channels.sms"


def test_hook_register_incentives(registry):
    class Stamps:
        kind = "stamps"
        spec_schema = {}
        tags = ("stamps.count",)

        def validate(self, spec, message):
            return []

        def reserve(self, spec, customer, ctx):
            return {"count": 1}

        async def issue(self, spec, grant, ctx):
            return grant

        def release(self, spec, grant, ctx):
            return None

    reg = registry_with(plugin("stamps_plugin", register_incentives=lambda register: register(Stamps())))
    assert reg.incentive("stamps").tags == ("stamps.count",)
    assert reg.incentives["stamps"].owner == "stamps_plugin"


def test_hook_register_optimizers_run_in_order():
    seen = []

    class Step:
        def __init__(self, name, order):
            self.name, self.order = name, order

        def apply(self, draft, ctx):
            seen.append(self.name)

    reg = registry_with(channels_plugin("pigeon"), plugin("steps", register_optimizers=lambda register: [
        register(Step("late", 90)), register(Step("early", 5))]))
    evaluate(message(), [Customer("a", {"loft": "x"})], at=AT, registry=reg)
    assert seen == ["early", "late"]
    assert [o.name for o in reg.pipeline] == ["early", "channel_priority", "late"]


def test_hook_register_fields_extends_what_rules_may_test():
    from engine.contracts import FieldSpec

    reg = registry_with(plugin("weather", register_fields=lambda register: register(
        FieldSpec("weather.rain_mm", "number", "rain today"))))
    cat = build_catalogue(r.obj for r in reg.fields.values())
    assert cat.lookup("weather.rain_mm").type == "number"
    assert reg.fields["weather.rain_mm"].owner == "weather"


def test_hook_register_rule_kinds_records_the_owner_and_refuses_clashes():
    from engine import RuleKind
    from engine.errors import UnknownReference

    def nothing(thens):
        return {}

    kind = RuleKind("pigeon_route", dict, nothing, order=45)
    reg = registry_with(plugin("routes", register_rule_kinds=lambda register: register(kind)))
    assert reg.rule_kinds["pigeon_route"].owner == "routes" and reg.rule_kind("pigeon_route") is kind
    assert reg.rule_kinds["channel_priority"].owner == "plugins.optimizers.channel_priority"
    assert ("pigeon_route", "rule_kind:45", "routes") in reg.rows()
    with pytest.raises(UnknownReference, match="unknown rule kind 'nope'; registered: channel_priority, pigeon_route"):
        reg.rule_kind("nope")
    clash = RuleKind("channel_priority", dict, nothing, order=1)
    with pytest.raises(PluginConflict, match="rule kind 'channel_priority' is registered twice: by plugin "
                                             "'plugins.optimizers.channel_priority' and by plugin 'mine'"):
        registry_with(plugin("mine", register_rule_kinds=lambda register: register(clash)))
    with pytest.raises(PluginConflict, match="plugin 'odd' registered a rule kind missing"):
        registry_with(plugin("odd", register_rule_kinds=lambda register: register({"name": "x"})))


def test_hook_register_contact_fields_shares_a_field_between_agreeing_plugins_only():
    from engine import ContactField

    def loft(value):
        return value.strip().lower()

    def other(value):
        return value

    field = ContactField("loft_id", "pigeon loft", normalise=loft)
    reg = registry_with(plugin("lofts", register_contact_fields=lambda register: register(field)),
                        plugin("racing", register_contact_fields=lambda register: register(
                            ContactField("loft_id", "racing loft", normalise=loft, region="GB"))))
    assert reg.contact_fields["loft_id"].owners == ("lofts", "racing")
    assert reg.contacts["loft_id"].region == "GB" and reg.contacts["loft_id"].description == "pigeon loft"
    assert [r for r in reg.rows() if r[1] == "contact"] == [("loft_id", "contact", "lofts"),
                                                             ("loft_id", "contact", "racing")]
    catalogue = build_catalogue(contacts=reg.contacts.values())
    assert catalogue.lookup("customer.loft_id").type == "string" and catalogue.regions == {"loft_id": "GB"}
    with pytest.raises(PluginConflict, match="contact field 'loft_id' is registered by plugin 'lofts' and by plugin "
                                             "'racing' with different normalise functions"):
        registry_with(plugin("lofts", register_contact_fields=lambda register: register(field)),
                      plugin("racing", register_contact_fields=lambda register: register(
                          ContactField("loft_id", normalise=other))))
    with pytest.raises(PluginConflict, match="plugin 'odd' registered contact field 'Loft': names are lower_snake"):
        registry_with(plugin("odd", register_contact_fields=lambda register: register(ContactField("Loft"))))
    with pytest.raises(ValueError, match="customer.timezone is one of the engine's own fields"):
        build_catalogue(contacts=[ContactField("timezone")])


def test_hook_enrich_facts_adds_facts_rules_can_use():
    from engine.rulefiles.ir import Cmp, Rule, Ruleset

    rs = Ruleset("elig", "eligibility", "first", (Rule("rainy", 1, Cmp("weather.rain_mm", "gt", 5), {"exclude": "rain"}),), "v1")
    reg = Registry.build(make_plugin_manager(
        ("plugins.optimizers.eligibility", "plugins.optimizers.channel_priority", channels_plugin("pigeon"),
         plugin("weather", enrich_facts=lambda customer: {"weather.rain_mm": 10 if customer.id == "wet" else 0})),
        entry_points=False))
    decisions = evaluate(message(rulesets={"eligibility": rs}), [Customer("wet", {"loft": 1}), Customer("dry", {"loft": 1})],
                         at=AT, registry=reg)
    assert [(d.customer, d.excluded_reason) for d in decisions] == [("wet", "rain"), ("dry", None)]


def test_hook_enrich_facts_may_not_overwrite_a_fact():
    from engine.errors import EvaluationError

    reg = registry_with(channels_plugin("pigeon"), plugin("bad", enrich_facts=lambda: {"customer.id": "x"}))
    with pytest.raises(EvaluationError, match="customer.id"):
        evaluate(message(), [Customer("a")], at=AT, registry=reg)


def test_hook_check_delivery_errors_drop_the_channel():
    def check(channel, customer):
        if channel == "pigeon" and customer.id == "blocked":
            return [Issue("loft", "quarantine", "loft under quarantine")]
        return None

    reg = registry_with(channels_plugin("pigeon", "raven"), plugin("checks", check_delivery=check))
    msg = message(creatives=(Creative("pigeon", "default", {"note": "a"}), Creative("raven", "default", {"note": "b"})))
    a, b = evaluate(msg, [Customer("ok", {"loft": 1}), Customer("blocked", {"loft": 1})], at=AT, registry=reg, explain=True)
    assert (a.channel, a.fallbacks) == ("pigeon", ("raven",))
    assert (b.channel, b.fallbacks) == ("raven", ())
    dropped = [t for t in b.trace if t.event == "channel_dropped"]
    assert dropped[0].detail["issues"] == ["loft under quarantine"]


def test_hook_engine_event_observers_see_decisions_and_cannot_break_evaluation(caplog):
    seen = []

    def observe(event):
        seen.append(event)
        raise RuntimeError("observer bug")

    reg = registry_with(channels_plugin("pigeon"), plugin("obs", engine_event=observe))
    decisions = evaluate(message(), [Customer("a", {"loft": 1})], at=AT, registry=reg)
    assert decisions[0].channel == "pigeon"
    assert [e.kind for e in seen] == ["decision_made"] and isinstance(seen[0], EngineEvent)
    assert "observer bug" in caplog.text


def test_duplicate_names_fail_naming_both_plugins():
    with pytest.raises(PluginConflict, match="'pigeon' is registered twice: by plugin 'p_pigeon' and by plugin 'second'"):
        registry_with(channels_plugin("pigeon"), plugin("second", register_channels=lambda register: register(Pigeon())))


def test_malformed_registrations_are_refused():
    with pytest.raises(PluginConflict, match="missing"):
        registry_with(plugin("broken", register_channels=lambda register: register(object())))
    with pytest.raises(PluginConflict, match="lower_snake_case"):
        registry_with(channels_plugin("Bad-Name"))


def test_misspelt_hooks_fail_when_the_manager_is_built():
    with pytest.raises(PluginConflict, match="register_chanels"):
        make_plugin_manager((plugin("typo", register_chanels=lambda register: None),), entry_points=False)


def test_each_call_builds_a_fresh_manager():
    a = make_plugin_manager(DEFAULT_PLUGINS, entry_points=False)
    b = make_plugin_manager(DEFAULT_PLUGINS, entry_points=False)
    assert a is not b
    a.register(channels_plugin("pigeon"))
    assert "pigeon" not in Registry.build(b).channels


def test_disable_plugins_blocks_defaults_by_name():
    pm = make_plugin_manager(DEFAULT_PLUGINS, entry_points=False, env={"HERALD_DISABLE_PLUGINS": "plugins.channels.sms"})
    reg = Registry.build(pm)
    assert "sms" not in reg.channels and "email" in reg.channels


def test_entry_point_plugins_follow_the_allow_list(monkeypatch):
    mod = channels_plugin("owl")
    monkeypatch.setitem(sys.modules, "herald_owl", mod)

    class EP:
        name, group = "owl", "herald"

        def load(self):
            return mod

    monkeypatch.setattr("engine.plugin_manager._entry_points", lambda group: [EP()] if group == "herald" else [])
    assert "owl" in Registry.build(make_plugin_manager(env={})).channels
    assert "owl" not in Registry.build(make_plugin_manager(env={"HERALD_PLUGINS": ""})).channels
    assert "owl" in Registry.build(make_plugin_manager(env={"HERALD_PLUGINS": "owl,other"})).channels
    assert "owl" not in Registry.build(make_plugin_manager(env={"HERALD_DISABLE_PLUGINS": "owl"})).channels
    assert "owl" not in Registry.build(make_plugin_manager(entry_points=False, env={})).channels


def test_registry_rows_list_everything_with_its_owner(registry):
    rows = registry.rows()
    assert ("sms", "channel:direct", "plugins.channels.sms") in rows
    assert ("coupon", "incentive", "plugins.incentives.coupon") in rows
    assert any(r[0] == "channel_priority" and r[2] == "plugins.optimizers.channel_priority" for r in rows)


# --- evaluators are registered like everything else ----------------------------------------------------


class AlwaysFirst:
    """An evaluator that fires the first rule of every ruleset, whatever the facts."""

    name = "always_first"

    def fired(self, ruleset, facts):
        return (ruleset.rules[0].id,)


def vip_rules():
    from engine.rulefiles.ir import Cmp, Rule, Ruleset

    return Ruleset("elig", "eligibility", "first", (Rule("vips", 1, Cmp("customer.vip", "eq", True), {"exclude": "vip"}),), "v1")


def test_hook_register_evaluators_adds_an_evaluator_the_pipeline_runs():
    from engine.contracts import EvaluatorSpec
    from engine.errors import UnknownReference

    reg = registry_with(channels_plugin("pigeon"), "plugins.optimizers.eligibility", plugin(
        "odd_rules", register_evaluators=lambda register: register(EvaluatorSpec("always_first", AlwaysFirst))))
    msg, customers = message(rulesets={"eligibility": vip_rules()}), [Customer("a", {"loft": 1, "vip": False})]
    assert evaluate(msg, customers, at=AT, registry=reg)[0].included  # compiled: not a VIP
    assert evaluate(msg, customers, at=AT, registry=reg, evaluator="always_first")[0].excluded_reason == "vip"
    assert reg.evaluators["always_first"].owner == "odd_rules"
    assert {n: r.owner for n, r in reg.evaluators.items() if n != "always_first"} == dict.fromkeys(
        ("compiled", "reference", "durable", "columnar"), "engine.evaluators.builtin")
    assert ("always_first", "evaluator", "odd_rules") in reg.rows()
    with pytest.raises(UnknownReference,
                       match="unknown evaluator 'nope'; registered: always_first, columnar, compiled, durable, reference"):
        evaluate(msg, customers, at=AT, registry=reg, evaluator="nope")


def test_builtin_evaluators_come_through_the_hook_and_can_be_blocked_or_clashed_with():
    from engine.contracts import EvaluatorSpec
    from engine.errors import UnknownReference
    from engine.evaluators import get_evaluator

    with pytest.raises(PluginConflict, match="'compiled' is registered twice: by plugin 'engine.evaluators.builtin' "
                                             "and by plugin 'mine'"):
        registry_with(plugin("mine", register_evaluators=lambda register: register(EvaluatorSpec("compiled", AlwaysFirst))))
    blocked = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False,
                                                 env={"HERALD_DISABLE_PLUGINS": "engine.evaluators.builtin"}))
    assert dict(blocked.evaluators) == {}
    with pytest.raises(UnknownReference, match="unknown evaluator 'compiled'; registered: none"):
        blocked.evaluator("compiled")
    with pytest.raises(UnknownReference, match="registered: columnar, compiled, durable, reference"):
        get_evaluator("fast")
    assert get_evaluator("reference").name == "reference"


# --- every event kind the engine_event hook declares is emitted --------------------------------------------


def test_hook_engine_event_reports_every_declared_kind():
    import asyncio
    from typing import get_args

    from engine.delivery import attempt
    from engine.events import EventKind
    from engine.model import IncentiveSpec
    from engine.testing import send_context

    seen: list[EngineEvent] = []
    reg = registry_with(channels_plugin("pigeon", "raven"), "plugins.optimizers.eligibility",
                        "plugins.incentives.coupon", plugin("obs", engine_event=lambda event: seen.append(event)))
    msg = message(rulesets={"eligibility": vip_rules()}, incentive=IncentiveSpec("coupon", {"length": 8, "expiry": {"days": 3}}),
                  creatives=(Creative("pigeon", "default", {"note": "a"}), Creative("raven", "default", {"note": "b"})))
    customers = [Customer("vip", {"loft": 1, "vip": True}), Customer("homeless"), Customer("ok", {"loft": 1})]
    decisions = evaluate(msg, customers, at=AT, registry=reg, preview=False)
    assert [d.excluded_reason for d in decisions] == ["vip", "no_reachable_channel", None]
    result = asyncio.run(attempt(reg.channel("pigeon"), {"note": "a"}, send_context("ok"), reg))
    assert result.provider_id == "coo-ok"
    assert {e.kind for e in seen} == set(get_args(EventKind))
    by_kind = {}
    for e in seen:
        by_kind.setdefault(e.kind, []).append(e)
    assert [(e.customer, e.detail["rule"], e.detail["ruleset"]) for e in by_kind["rule_fired"]] == [("vip", "vips", "elig")]
    assert {(e.customer, e.detail["channel"], e.detail["why"]) for e in by_kind["channel_dropped"]} == {
        ("homeless", "pigeon", "contact_unavailable"), ("homeless", "raven", "contact_unavailable")}
    (reserved,) = by_kind["incentive_reserved"]
    assert reserved.customer == "ok" and reserved.detail["grant"]["code"] == decisions[2].incentive["code"]
    assert [e.detail["outcome"] for e in by_kind["send_finished"]] == ["accepted"]
    assert [e.customer for e in by_kind["decision_made"]] == ["vip", "homeless", "ok"]


def test_a_preview_reports_no_incentive_reserved():
    from engine.model import IncentiveSpec

    seen: list[EngineEvent] = []
    reg = registry_with(channels_plugin("pigeon"), "plugins.incentives.coupon", plugin("obs", engine_event=lambda event: seen.append(event)))
    msg = message(incentive=IncentiveSpec("coupon", {"length": 8, "expiry": {"days": 3}}))
    evaluate(msg, [Customer("a", {"loft": 1})], at=AT, registry=reg, preview=True)
    assert [e.kind for e in seen] == ["decision_made"]
