"""A plugin adds an optimizer with its own rule kind, and nothing in engine/ changes.

The test plugin registers ``send_window`` (rules that delay the send by some minutes) and the optimizer
that consumes it. Its rule files load with line and column in their errors, their ``tests:`` examples run,
message files name them, the JSON Schema offers them, and both the per-recipient pipeline and the bulk plan
apply them, with the same decisions. Without the plugin, the same files are refused naming the kinds that
are registered.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict, Field

from engine import Customer, RuleKind, hookimpl
from engine.columnar import unsupported
from engine.errors import MessageFileError, RuleFileError
from engine.evaluators import get_evaluator
from engine.fields import build_catalogue, load_org_fields
from engine.pipeline import Pipeline
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.rulefiles import run_rule_tests
from engine.rulefiles.schema import json_schema
from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS

from ..conftest import AT, ROOT, RULES

KIND = "send_window"


class DelayThen(BaseModel):
    """A send_window rule delays the send by ``delay_minutes``."""

    model_config = ConfigDict(extra="forbid")

    delay_minutes: int = Field(ge=0, le=7 * 24 * 60)


def delay_outcome(thens):
    """The first fired rule's delay (0 when none fired)."""
    return {"delay_minutes": thens[0]["delay_minutes"] if thens else 0}


class SendWindow:
    """Runs after channel priority, before quiet hours: moves the send later by the rules' delay."""

    name = "send_window"
    order = 85

    def active(self, message):
        return KIND in message.rulesets

    def apply(self, draft, ctx):
        delay = delay_outcome([f.then for f in ctx.run_rules(KIND, draft)])["delay_minutes"]
        if delay and draft.send_at is not None:
            draft.note(self.name, "delayed", minutes=delay)
            draft.send_at += timedelta(minutes=delay)

    def columnar(self, frame, ctx):
        frame = ctx.run_rules(frame, KIND)
        minutes = pl.lit(pl.Series(ctx.outcome_table(KIND, "delay_minutes"), dtype=pl.Int64))
        return ctx.set_send_at(frame, ctx.send_at + pl.duration(minutes=minutes.gather(ctx.fired_index(KIND) + 1)))


class SendWindowPlugin:
    """The third-party plugin: one rule kind and the optimizer consuming it."""

    __name__ = "herald_send_window"

    @hookimpl
    def register_rule_kinds(self, register):
        register(RuleKind(KIND, DelayThen, delay_outcome, order=85, hit_policies=("first",),
                          description="delays the send by the first fired rule's minutes"))

    @hookimpl
    def register_optimizers(self, register):
        register(SendWindow())


RULES_FILE = """\
ruleset: late-for-gold
kind: send_window
hit_policy: first
rules:
  - id: gold-later
    priority: 10
    when: {field: customer.tier, eq: gold}
    then: {delay_minutes: 90}
  - id: silver-a-bit
    priority: 20
    when: {field: customer.tier, eq: silver}
    then: {delay_minutes: 15}
tests:
  - given: {customer: {tier: gold}}
    expect: {fired: [gold-later], delay_minutes: 90}
  - given: {customer: {tier: bronze}}
    expect: {fired: [], delay_minutes: 0}
"""

MESSAGE_FILE = """\
message:
  id: windowed
  title: Windowed sale
  campaign: {id: c1, starts: 2026-06-01, ends: 2026-12-31}
rules:
  send_window: window.yaml
creatives:
  - channel: sms
    content: {body: "Sale today. {{ optout }}"}
schedule: {kind: at, at: 2026-07-04T15:00:00+00:00}
delivery:
  senders:
    sms: {sender_id: HERALD}
"""

CUSTOMERS = [
    Customer("g", {"tier": "gold", "phone": "+14155550123", "timezone": "Asia/Kolkata"}),
    Customer("s", {"tier": "silver", "phone": "+14155550124"}),
    Customer("b", {"tier": "bronze", "phone": "+14155550125"}),
    Customer("x", {"tier": "gold"}),  # no phone: excluded, not delayed
]


def herald_with(*extra) -> Herald:
    registry = Registry.build(make_plugin_manager((*DEFAULT_PLUGINS, *extra), entry_points=False))
    return Herald(registry, build_catalogue((r.obj for r in registry.fields.values()),
                                            load_org_fields(RULES / "fields.yaml"), registry.contacts.values()))


def files(tmp_path: Path, rules: str = RULES_FILE, message: str = MESSAGE_FILE) -> Path:
    (tmp_path / "window.yaml").write_text(rules, encoding="utf-8")
    (tmp_path / "windowed.message.yaml").write_text(message, encoding="utf-8")
    return tmp_path / "windowed.message.yaml"


def test_the_plugin_kind_loads_and_its_examples_run(tmp_path):
    herald = herald_with(SendWindowPlugin())
    files(tmp_path)
    rs = herald.load_ruleset(tmp_path / "window.yaml")
    assert (rs.kind, [r.then for r in rs.rules]) == (KIND, [{"delay_minutes": 90}, {"delay_minutes": 15}])
    assert herald.registry.rule_kinds[KIND].owner == "herald_send_window"
    for evaluator in ("compiled", "reference"):
        assert run_rule_tests(rs, get_evaluator(evaluator), herald.registry.kinds) == []
    wrong = rs.tests[0] | {"expect": {"fired": ["gold-later"], "delay_minutes": 5}}
    assert run_rule_tests(replace(rs, tests=(wrong,)), get_evaluator("compiled"),
                          herald.registry.kinds) == ["tests[0]: expected delay_minutes 5, got 90 (fired: ['gold-later'])"]


def test_the_plugin_kind_changes_decisions_per_recipient_and_in_bulk_alike(tmp_path):
    herald = herald_with(SendWindowPlugin())
    message = herald.load_message(files(tmp_path))
    assert unsupported(message, herald.registry) is None  # the bulk plan can take it: the optimizer is columnar
    per_recipient = herald.evaluate(message, CUSTOMERS, at=AT, mode="per_recipient", evaluator="reference")
    decisions = {d.customer: d for d in per_recipient}
    base = Pipeline(message, herald.registry, at=AT).base_send_at
    assert decisions["g"].send_at == base + timedelta(minutes=90)
    assert decisions["s"].send_at == base + timedelta(minutes=15)
    assert decisions["b"].send_at == base
    assert decisions["x"].excluded_reason == "no_reachable_channel"
    assert dict(decisions["g"].fired) == {"late-for-gold": ("gold-later",)}
    bulk = herald.evaluate(message, CUSTOMERS, at=AT, mode="bulk", evaluator="columnar")
    assert bulk.mode == "bulk"
    assert [d.as_dict() for d in bulk] == [decisions[c.id].as_dict() for c in CUSTOMERS]
    assert bulk.summary().as_dict() == per_recipient.summary().as_dict()


def test_the_plugin_kind_runs_in_pipeline_order_among_the_built_in_kinds(tmp_path, registry):
    herald = herald_with(SendWindowPlugin())
    assert list(herald.registry.kinds) == ["audience_filter", "eligibility", "personalization", "channel_priority", KIND]
    assert list(registry.kinds) == ["audience_filter", "eligibility", "personalization", "channel_priority"]


def test_without_the_plugin_the_kind_is_refused_naming_the_registered_ones(tmp_path, herald):
    message = files(tmp_path)
    with pytest.raises(RuleFileError) as info:
        herald.load_ruleset(tmp_path / "window.yaml")
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'window.yaml'}:2:1: kind: unknown rule kind 'send_window'; "
        "registered: audience_filter, channel_priority, eligibility, personalization"]
    with pytest.raises(MessageFileError) as info:
        herald.load_message(message)
    assert [str(p) for p in info.value.problems] == [
        f"{message}:6:3: rules.send_window: unknown rule kind 'send_window'; "
        "registered: audience_filter, channel_priority, eligibility, personalization"]


def test_the_kind_decides_its_then_and_hit_policies_with_line_and_column(tmp_path):
    herald = herald_with(SendWindowPlugin())
    bad = RULES_FILE.replace("hit_policy: first", "hit_policy: collect").replace("delay_minutes: 15}", "delay_minutes: -5}")
    files(tmp_path, rules=bad)
    with pytest.raises(RuleFileError) as info:
        herald.load_ruleset(tmp_path / "window.yaml")
    path = tmp_path / "window.yaml"
    assert [str(p) for p in info.value.problems] == [
        f"{path}:3:1: hit_policy: a send_window ruleset takes hit_policy first, not collect",
        f"{path}:12:12: silver-a-bit:then.delay_minutes: Input should be greater than or equal to 0",
    ]


def test_a_strategy_must_be_a_registered_strategy_kind(tmp_path):
    herald = herald_with(SendWindowPlugin())
    message = files(tmp_path, message=MESSAGE_FILE.replace("  campaign:", "  strategy: [send_window]\n  campaign:"))
    with pytest.raises(MessageFileError) as info:
        herald.load_message(message)
    assert [str(p) for p in info.value.problems] == [
        f"{message}:4:14: message.strategy[0]: unknown strategy 'send_window'; "
        "one of personalization, channel_priority, x_engage"]


def test_the_json_schema_is_built_from_the_registered_kinds():
    schema = json_schema(herald_with(SendWindowPlugin()).registry.kinds)
    assert schema["properties"]["kind"]["enum"] == [
        "audience_filter", "channel_priority", "eligibility", "personalization", KIND]
    branch = next(b for b in schema["allOf"] if b["if"]["properties"]["kind"] == {"const": KIND})
    assert branch["then"]["properties"]["hit_policy"] == {"enum": ["first"]}
    ref = branch["then"]["properties"]["rules"]["items"]["properties"]["then"]["$ref"]
    then = schema["$defs"][ref.rsplit("/", 1)[1]]
    assert then["properties"]["delay_minutes"]["minimum"] == 0 and then["additionalProperties"] is False


def test_built_in_optimizers_reach_the_frame_and_hooks_only_through_the_context():
    """No magic column names, no raw hook relay: the typed ColumnarContext / EvaluationContext only."""
    offenders = []
    for path in sorted((ROOT / "plugins" / "optimizers").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for needle in ('"_fired', '"_included"', '"_channels"', '"_variant"', '"_reason"', '"_send_at"', ".hook."):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []
