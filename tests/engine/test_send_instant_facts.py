"""``time.*`` facts describe each recipient's planned send instant (schedule → local send time, in their
zone), not the evaluation instant: a preview run today and the real run later decide the same."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from engine import Campaign, Creative, Customer, Message, Schedule
from engine.audience import read_audience
from engine.facts import FactBuilder
from engine.pipeline import Pipeline
from engine.rulefiles.ir import Always, Cmp, Rule, Ruleset
from engine.run import evaluate
from tests.conftest import AT, EXAMPLES

PHONE = "+14155550123"
ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia", None]


def by_time() -> Ruleset:
    """Variants named after what the rules see of the send instant."""
    then = lambda v: {"variant": v, "vars": {}}  # noqa: E731
    return Ruleset("by-time", "personalization", "first", (
        Rule("nine", 1, Cmp("time.local_hour", "eq", 9), then("nine")),
        Rule("late", 2, Cmp("time.local_hour", "gte", 22), then("late")),
        Rule("monday", 3, Cmp("time.weekday", "eq", "mon"), then("monday")),
        Rule("other", 4, Always(), then("other"))), "v1")


def message(schedule: Schedule, ends: date | None = date(2026, 12, 31)) -> Message:
    return Message("m", "M", Campaign("c", starts=date(2026, 1, 1), ends=ends), strategy=("personalization",),
                   rulesets={"personalization": by_time()},
                   creatives=(Creative("sms", "default", {"body": "Hi {{ optout }}"}),), schedule=schedule)


def people() -> list[Customer]:
    return [Customer(f"c{i}", {"phone": PHONE, **({"timezone": z} if z else {})}) for i, z in enumerate(ZONES)]


def test_the_preview_does_not_change_with_the_wall_clock(herald):
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    customers = read_audience(EXAMPLES / "audience.csv", herald.catalogue).customers
    keys = ("customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "send_at", "fired")
    runs = [[{k: d.as_dict()[k] for k in keys} for d in evaluate(msg, customers, at=at, registry=herald.registry)]
            for at in (AT, AT - timedelta(days=3), AT - timedelta(hours=10), AT - timedelta(days=30, hours=5))]
    assert runs[0] == runs[1] == runs[2] == runs[3]
    assert {d["variant"] for d in runs[0]} >= {"gold_evening", "generic"}


def test_time_facts_are_each_recipients_local_send_instant(registry):
    # the run is at 2026-07-04 00:00 UTC; everyone is sent at 09:00 on their own clock, whatever "now" is
    msg = message(Schedule("at", datetime(2026, 7, 4, tzinfo=UTC), local_time="09:00"))
    decisions = evaluate(msg, people(), at=datetime(2026, 7, 1, 12, tzinfo=UTC), registry=registry)
    assert [d.variant for d in decisions] == ["nine"] * len(ZONES)
    ny = decisions[0].send_at
    assert ny == datetime(2026, 7, 4, 13, tzinfo=UTC)  # 09:00 EDT


def test_time_facts_use_the_offset_in_force_at_the_send_instant(registry):
    # "now" is in winter time (EST), the send after the spring-forward: 14:00 UTC is 10:00 EDT, not 09:00 EST
    msg = message(Schedule("at", datetime(2026, 3, 10, 14, tzinfo=UTC)))
    (d,) = evaluate(msg, people()[:1], at=datetime(2026, 3, 1, 14, tzinfo=UTC), registry=registry)
    assert d.variant == "other"
    (d,) = evaluate(replace(msg, schedule=Schedule("at", datetime(2026, 3, 10, 13, tzinfo=UTC))), people()[:1],
                    at=datetime(2026, 3, 1, 14, tzinfo=UTC), registry=registry)
    assert d.variant == "nine"


def test_quiet_hours_move_the_send_without_re_deciding(registry):
    msg = message(Schedule("at", datetime(2026, 7, 4, tzinfo=UTC), local_time="22:30", quiet_hours=("22:00", "08:00")))
    (d,) = evaluate(msg, people()[3:4], at=datetime(2026, 7, 1, tzinfo=UTC), registry=registry, explain=True)
    assert d.variant == "late"  # decided for 22:30 in Kolkata, the planned instant
    assert d.send_at == datetime(2026, 7, 5, 2, 30, tzinfo=UTC)  # moved to 08:00 IST the next morning
    assert any(t.step == "quiet_hours" and t.event == "deferred" for t in d.trace)


def test_a_recurring_message_is_decided_for_its_next_run(registry):
    weekly = Schedule("recurring", datetime(2026, 7, 6, 9, tzinfo=UTC), rrule="FREQ=WEEKLY;BYDAY=MO")
    pipeline = Pipeline(message(weekly), registry, at=datetime(2026, 7, 8, 12, tzinfo=UTC))
    assert pipeline.base_send_at == datetime(2026, 7, 13, 9, tzinfo=UTC)
    (d,) = pipeline.run(people()[1:2])  # London: 10:00 BST on a Monday
    assert (d.variant, d.send_at) == ("monday", datetime(2026, 7, 13, 9, tzinfo=UTC))


def test_fact_builder_computes_each_zone_once_at_its_send_instant():
    fb = FactBuilder(datetime(2026, 7, 1, tzinfo=UTC), {"message.id": "m"},
                     send_at=datetime(2026, 7, 4, tzinfo=UTC), local_time="09:00")
    kol = Customer("k", {"timezone": "Asia/Kolkata"})
    assert fb.facts(kol)["time.local_hour"] == 9 and fb.facts(kol)["time.date"] == "2026-07-04"
    assert fb.send_time(kol) == datetime(2026, 7, 4, 3, 30, tzinfo=UTC)
    assert fb.time("Asia/Kolkata") is fb.time("Asia/Kolkata")  # cached per zone
    assert fb.at == datetime(2026, 7, 1, tzinfo=UTC)
