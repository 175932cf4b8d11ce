"""Quiet hours: sends inside the recipient's local quiet window move to its end; nobody is dropped."""

from __future__ import annotations

from datetime import UTC, date, datetime

from engine import Campaign, Creative, Customer, Message, Schedule
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.run import evaluate
from plugins import DEFAULT_PLUGINS
from plugins.optimizers.quiet_hours import QuietHours
from tests.plugins.optimizers.frames import assert_columnar_equals_apply, drafts

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
SMS = Creative("sms", content={"body": "Flash sale tonight. {{ optout }}"})
PHONE = "+14155550123"
PEOPLE = [
    Customer("kolkata", {"phone": PHONE, "timezone": "Asia/Kolkata"}),      # 19:00 local: allowed
    Customer("tokyo", {"phone": PHONE, "timezone": "Asia/Tokyo"}),          # 22:30 local: quiet
    Customer("auckland", {"phone": PHONE, "timezone": "Pacific/Auckland"}),  # 01:30 local: quiet
    Customer("new-york", {"phone": PHONE, "timezone": "America/New_York"}),  # 09:30 local: allowed
    Customer("nowhere", {"phone": PHONE, "timezone": "Mars/Olympus"}),      # invalid zone: UTC 13:30
]


def message(quiet=None, optimizers=None) -> Message:
    return Message("flash", "Flash sale", Campaign("summer-2026", starts=date(2026, 6, 1)), creatives=(SMS,),
                   schedule=Schedule(quiet_hours=quiet), optimizers=optimizers or {})


def send_times(msg, registry) -> dict[str, datetime]:
    decisions = evaluate(msg, PEOPLE, at=AT, registry=registry)
    assert all(d.included for d in decisions)  # quiet hours never drop
    return {d.customer: d.send_at for d in decisions}


def test_sends_in_the_local_quiet_window_move_to_its_end(registry):
    got = send_times(message(("21:00", "09:00")), registry)
    assert got == {
        "kolkata": AT,
        "tokyo": datetime(2026, 7, 5, 0, 0, tzinfo=UTC),       # 09:00 JST next morning
        "auckland": datetime(2026, 7, 4, 21, 0, tzinfo=UTC),   # 09:00 NZST the same morning
        "new-york": AT,
        "nowhere": AT,
    }


def test_without_a_window_nothing_moves(registry):
    assert set(send_times(message(), registry).values()) == {AT}


def test_optimizer_settings_give_the_window_when_the_schedule_has_none(registry):
    got = send_times(message(optimizers={"quiet_hours": {"start": "08:00", "end": "10:00"}}), registry)
    assert got["new-york"] == datetime(2026, 7, 4, 14, 0, tzinfo=UTC)  # 09:30 EDT → 10:00 EDT
    assert got["tokyo"] == AT


def test_an_org_default_window_and_default_time_zone_from_plugin_settings():
    settings = {"plugins.optimizers.quiet_hours": {"start": "13:00", "end": "14:00", "default_timezone": "UTC"}}
    reg = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), settings)
    got = send_times(message(), reg)
    assert got["nowhere"] == datetime(2026, 7, 4, 14, 0, tzinfo=UTC)


def test_the_move_is_traced(registry):
    (d,) = evaluate(message(("21:00", "09:00")), PEOPLE[1:2], at=AT, registry=registry, explain=True)
    step = next(t for t in d.trace if t.step == "quiet_hours")
    assert step.event == "deferred" and step.detail["to"] == "2026-07-05T00:00:00+00:00"
    assert step.detail["timezone"] == "Asia/Tokyo" and step.detail["window"] == ["21:00", "09:00"]


def test_a_window_end_skipped_by_dst_lands_on_a_real_time():
    qh = QuietHours({})
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; 01:30 EST is 06:30 UTC
    moved = qh.moved(datetime(2026, 3, 8, 6, 30, tzinfo=UTC), ("22:00", "02:30"), "America/New_York")
    assert moved == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, the first valid instant after the gap


def test_columnar_equals_apply(registry):
    msg = message(("21:00", "09:00"))
    after = assert_columnar_equals_apply(QuietHours({}), drafts(PEOPLE * 4, ["sms"], AT), msg, registry, AT)
    assert any(d.send_at != AT for d in after)
