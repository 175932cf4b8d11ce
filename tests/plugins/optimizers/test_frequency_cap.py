"""Frequency caps: per channel or overall, per day / Sunday-start week / month, over the send history."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from engine import Campaign, Creative, Customer, Message
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.run import evaluate
from plugins import DEFAULT_PLUGINS
from plugins.optimizers.frequency_cap import FrequencyCap, period_start

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)  # a Saturday
ANA = Customer("ana", {"phone": "+14155550123", "email": "ana@example.com"})
CREATIVES = (Creative("sms", content={"body": "20% off today. {{ optout }}"}),
             Creative("email", content={"subject": "20% off", "html": "<a href='{{ unsubscribe_url }}'>x</a>"}))
LIMITS = [{"channel": "sms", "period": "day", "max": 1}, {"period": "week", "max": 3},
          {"channel": "email", "period": "month", "max": 2}]


def message(limits=LIMITS, **own) -> Message:
    settings = {"limits": limits, **own} if limits is not None else own
    return Message("sale", "Sale", Campaign("summer-2026", starts=date(2026, 6, 1)), channels=("sms", "email"),
                   creatives=CREATIVES, optimizers={"frequency_cap": settings} if settings else {})


def decide(msg, registry, *sends, customer=ANA):
    history = {customer.id: [{"channel": c, "sent_at": t} for c, t in sends]}
    (d,) = evaluate(msg, [customer], at=AT, registry=registry, history=history, explain=True)
    return d


def test_no_history_or_no_limits_changes_nothing(registry):
    assert decide(message(), registry).channel == "sms"
    assert decide(message(limits=None), registry, ("sms", "2026-07-04T08:00:00+00:00")).channel == "sms"


def test_a_daily_sms_cap_drops_sms_and_email_takes_over(registry):
    d = decide(message(), registry, ("sms", "2026-07-04T08:00:00+00:00"))
    assert (d.included, d.channel, d.fallbacks) == (True, "email", ())
    drop = next(t for t in d.trace if t.step == "frequency_cap")
    assert (drop.event, drop.detail["channel"], drop.detail["why"]) == ("channel_dropped", "sms", "frequency_cap")
    assert (drop.detail["period"], drop.detail["max"], drop.detail["sent"]) == ("day", 1, 1)


def test_yesterdays_sms_does_not_count_against_todays_cap(registry):
    d = decide(message(), registry, ("sms", datetime(2026, 7, 3, 23, 59, tzinfo=UTC)))
    assert d.channel == "sms" and d.fallbacks == ("email",)


def test_an_overall_weekly_cap_excludes(registry):
    sends = [("email", "2026-06-28T09:00:00+00:00"), ("sms", "2026-07-01T09:00:00+00:00"),
             ("email", "2026-07-02T09:00:00+00:00")]
    d = decide(message(), registry, *sends)
    assert (d.included, d.excluded_reason) == (False, "frequency_cap")
    step = next(t for t in d.trace if t.step == "frequency_cap")
    assert step.detail["channel"] == "overall" and step.detail["sent"] == 3


def test_the_week_starts_on_sunday(registry):
    sends = [("email", "2026-06-27T23:00:00+00:00"), ("sms", "2026-07-01T09:00:00+00:00"),
             ("email", "2026-07-02T09:00:00+00:00")]  # the Saturday before belongs to the previous week
    assert decide(message(), registry, *sends).included
    assert period_start(AT, "week", ZoneInfo("UTC")) == datetime(2026, 6, 28, tzinfo=UTC)
    assert period_start(AT, "month", ZoneInfo("UTC")) == datetime(2026, 7, 1, tzinfo=UTC)


def test_every_channel_capped_excludes_with_frequency_cap(registry):
    sends = [("sms", "2026-07-04T07:00:00+00:00"), ("email", "2026-06-01T07:00:00+00:00"),
             ("email", "2026-06-15T07:00:00+00:00")]  # June does not count for the monthly email cap …
    assert decide(message(), registry, *sends).channel == "email"
    sends += [("email", "2026-07-01T07:00:00+00:00"), ("email", "2026-07-02T07:00:00+00:00")]  # … July's do
    d = decide(message(limits=LIMITS[:1] + LIMITS[2:]), registry, *sends)
    assert (d.included, d.excluded_reason) == (False, "frequency_cap")
    assert d.trace[-1].detail["why"] == "every channel is capped"


def test_org_limits_from_plugin_settings_and_a_message_opting_out():
    settings = {"plugins.optimizers.frequency_cap": {"limits": [{"period": "day", "max": 1}],
                                                     "timezone": "Asia/Kolkata"}}
    reg = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), settings)
    late = ("sms", "2026-07-03T20:00:00+00:00")  # 01:30 on the 4th in Kolkata: today there, yesterday in UTC
    assert decide(message(limits=None), reg, late).excluded_reason == "frequency_cap"
    assert decide(message(limits=None, enabled=False), reg, late).included


@pytest.mark.parametrize(("limits", "where"), [
    ([{"period": "fortnight", "max": 2}], "limits[0].period"),
    ([{"channel": "sms", "period": "day", "max": -1}], "limits[0].max"),
    ("twice a day", "limits"),
])
def test_invalid_limits_name_the_field(limits, where):
    with pytest.raises(ValueError, match=re.escape(where)):
        FrequencyCap({"limits": limits})


def test_active_only_with_limits():
    cap = FrequencyCap({})
    assert cap.active(message()) and not cap.active(message(limits=None))
