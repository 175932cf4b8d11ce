"""Control group: a deterministic hash split per campaign (or org), held out unless send_to_control."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from engine import Campaign, Creative, Customer, DeliverySettings, Message
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.run import evaluate
from plugins import DEFAULT_PLUGINS
from plugins.optimizers.control_group import ControlGroup, bucket
from tests.plugins.optimizers.frames import assert_columnar_equals_apply, drafts

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
SMS = Creative("sms", content={"body": "Summer sale: 20% off. {{ optout }}"})
PEOPLE = [Customer(f"c{i:05d}", {"phone": "+14155550123"}) for i in range(10_000)]


def message(campaign="summer-2026", optimizers=None, **delivery) -> Message:
    return Message("summer-sale", "Summer sale", Campaign(campaign, starts=date(2026, 6, 1)), creatives=(SMS,),
                   optimizers=optimizers or {}, delivery=DeliverySettings(**delivery))


def held_out(msg, registry) -> set[str]:
    return {d.customer for d in evaluate(msg, PEOPLE, at=AT, registry=registry) if d.excluded_reason == "control_group"}


def test_without_settings_nobody_is_held_out(registry):
    assert held_out(message(), registry) == set()


def test_default_split_is_ten_percent_and_deterministic(registry):
    msg = message(optimizers={"control_group": {}})
    first = held_out(msg, registry)
    assert 900 <= len(first) <= 1100
    assert held_out(msg, registry) == first


def test_percent_setting_and_independent_campaign_splits(registry):
    a = held_out(message(optimizers={"control_group": {"percent": 25}}), registry)
    b = held_out(message("autumn-2026", optimizers={"control_group": {"percent": 25}}), registry)
    assert 2300 <= len(a) <= 2700 and 2300 <= len(b) <= 2700
    assert 400 <= len(a & b) <= 850  # independent splits overlap by about 25 % of 25 %


def test_org_level_split_is_the_same_in_every_campaign(registry):
    settings = {"control_group": {"level": "org", "percent": 10}}
    assert held_out(message(optimizers=settings), registry) == held_out(message("autumn-2026", optimizers=settings), registry)


def test_send_to_control_keeps_control_members_and_traces_them(registry):
    msg = message(optimizers={"control_group": {"percent": 50}}, send_to_control=True)
    decisions = evaluate(msg, PEOPLE[:200], at=AT, registry=registry, explain=True)
    assert all(d.included for d in decisions)
    marked = [d for d in decisions if any(t.event == "control_member_sent" for t in d.trace)]
    assert 60 <= len(marked) <= 140


def test_exclusion_is_traced_and_counted(registry, herald):
    msg = message(optimizers={"control_group": {"percent": 10}})
    run = herald.evaluate(msg, PEOPLE[:500], at=AT, explain=True)
    decisions = list(run)
    out = next(d for d in decisions if not d.included)
    assert out.excluded_reason == "control_group" and out.channel is None
    step = out.trace[0]
    assert (step.step, step.event, step.detail["reason"]) == ("control_group", "excluded", "control_group")
    assert step.detail["bucket"] < step.detail["threshold"] == 1000
    assert run.summary().as_dict()["exclusion_reasons"]["control_group"] == 500 - run.summary().included


def test_org_wide_plugin_settings_apply_unless_the_message_opts_out():
    pm = make_plugin_manager(DEFAULT_PLUGINS, entry_points=False)
    reg = Registry.build(pm, {"plugins.optimizers.control_group": {"percent": 5}})
    assert 400 <= len(held_out(message(), reg)) <= 600
    assert held_out(message(optimizers={"control_group": {"percent": 0}}), reg) == set()


def test_bucket_is_stable_sha256():
    assert bucket("herald:summer-2026", "c00001") == bucket("herald:summer-2026", "c00001")
    assert bucket("herald:summer-2026", "c00001") != bucket("herald:autumn-2026", "c00001")
    assert 0 <= bucket("x", "y") < 10_000


@pytest.mark.parametrize("send_to_control", [False, True])
def test_columnar_equals_apply(registry, send_to_control):
    msg = message(optimizers={"control_group": {"percent": 30}}, send_to_control=send_to_control)
    ds = drafts(PEOPLE[:300], ["sms"], AT)
    after = assert_columnar_equals_apply(ControlGroup({}), ds, msg, registry, AT)
    assert any(d.excluded_reason == "control_group" for d in after) != send_to_control


def test_inactive_columnar_returns_the_frame_unchanged(registry):
    ds = drafts(PEOPLE[:30], ["sms"], AT)
    assert_columnar_equals_apply(ControlGroup({}), ds, replace(message(), optimizers={}), registry, AT)
