"""Cost: reachable channels ranked by expected value minus cost, the figures traced."""

from __future__ import annotations

from datetime import UTC, date, datetime

from engine import Campaign, Creative, Customer, Message
from engine.run import evaluate
from plugins.optimizers.cost import Cost
from tests.plugins.optimizers.frames import assert_columnar_equals_apply, drafts

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
ANA = Customer("ana", {"phone": "+14155550123", "email": "ana@example.com"})
CREATIVES = (Creative("sms", content={"body": "20% off today. {{ optout }}"}),
             Creative("email", content={"subject": "20% off", "html": "<a href='{{ unsubscribe_url }}'>x</a>"}))
SMS_WINS = {"value": 50.0, "channels": {"sms": {"cost": 0.05, "conversion_rate": 0.004},
                                        "email": {"cost": 0.001, "conversion_rate": 0.002}}}
EMAIL_WINS = {"value": 50.0, "channels": {"sms": {"cost": 0.05, "conversion_rate": 0.002},
                                          "email": {"conversion_rate": 0.002}}}


def message(cost=None, channels=("sms", "email")) -> Message:
    return Message("sale", "Sale", Campaign("summer-2026", starts=date(2026, 6, 1)), channels=channels,
                   creatives=CREATIVES, optimizers={"cost": cost} if cost is not None else {})


def decide(msg, registry, customer=ANA):
    (d,) = evaluate(msg, [customer], at=AT, registry=registry, explain=True)
    return d


def test_without_settings_the_priority_order_stands(registry):
    d = decide(message(channels=("email", "sms")), registry)
    assert (d.channel, d.fallbacks) == ("email", ("sms",))
    assert not any(t.step == "cost" for t in d.trace)


def test_the_highest_margin_goes_first_and_the_figures_are_traced(registry):
    d = decide(message(SMS_WINS, channels=("email", "sms")), registry)
    assert (d.channel, d.fallbacks) == ("sms", ("email",))
    step = next(t for t in d.trace if t.step == "cost")
    assert step.detail["figures"]["sms"] == {"cost": 0.05, "conversion_rate": 0.004, "expected_value": 0.2,
                                             "margin": 0.15}
    assert step.detail["figures"]["email"]["margin"] == 0.099


def test_channel_cost_defaults_to_the_channel_plugins_cost(registry):
    d = decide(message(EMAIL_WINS), registry)
    assert (d.channel, d.fallbacks) == ("email", ("sms",))
    step = next(t for t in d.trace if t.step == "cost")
    assert step.detail["figures"]["email"]["cost"] == registry.channel("email").cost


def test_unreachable_channels_are_not_ranked(registry):
    d = decide(message(EMAIL_WINS), registry, Customer("ben", {"phone": "+14155550124"}))
    assert (d.channel, d.fallbacks) == ("sms", ())
    assert list(next(t for t in d.trace if t.step == "cost").detail["figures"]) == ["sms"]


def test_ties_keep_the_priority_order(registry):
    even = {"value": 10.0, "channels": {"sms": {"cost": 0.01, "conversion_rate": 0.01},
                                        "email": {"cost": 0.01, "conversion_rate": 0.01}}}
    assert decide(message(even, channels=("email", "sms")), registry).channel == "email"
    assert decide(message(even, channels=("sms", "email")), registry).channel == "sms"


def test_drop_unprofitable_removes_loss_making_channels_and_may_exclude(registry):
    d = decide(message({**EMAIL_WINS, "value": 10.0, "drop_unprofitable": True}), registry)
    assert (d.channel, d.fallbacks) == ("email", ())  # sms: 0.02 − 0.05 < 0
    broke = {"value": 1.0, "drop_unprofitable": True, "channels": {"sms": {"cost": 0.05}, "email": {"cost": 0.01}}}
    d = decide(message(broke), registry)
    assert (d.included, d.excluded_reason) == (False, "unprofitable")


def test_columnar_equals_apply(registry):
    people = [Customer(f"c{i}") for i in range(12)]
    for settings, expect_first in ((SMS_WINS, "sms"), (EMAIL_WINS, "email")):
        after = assert_columnar_equals_apply(Cost({}), drafts(people, ["email", "sms"], AT), message(settings),
                                             registry, AT)
        assert after[0].channels[0] == expect_first
    broke = {"value": 1.0, "drop_unprofitable": True, "channels": {"sms": {"cost": 0.05}, "email": {"cost": 0.01}}}
    after = assert_columnar_equals_apply(Cost({}), drafts(people, ["email", "sms"], AT), message(broke), registry, AT)
    assert after[0].excluded_reason == "unprofitable"
    assert_columnar_equals_apply(Cost({}), drafts(people, ["sms"], AT), message(), registry, AT)
