"""A send time before "now" (``at``) or a campaign that has ended is refused before any evaluation, with
the dates and the place in the message file; never a silent ``send_at`` in the past."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from engine import Campaign, Creative, Customer, Message, Schedule
from engine.errors import MessageFileError
from engine.pipeline import Pipeline
from engine.run import evaluate
from tests.conftest import AT, EXAMPLES

SAMPLE = EXAMPLES / "summer-sale.message.yaml"


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(SAMPLE.read_text().splitlines(), 1) if text in line)


def refused(message, registry, at) -> str:
    with pytest.raises(MessageFileError) as info:
        Pipeline(message, registry, at=at)
    (problem,) = info.value.problems
    return str(problem)


def test_a_scheduled_send_before_now_is_refused_naming_both_dates(herald):
    msg = herald.load_message(SAMPLE)
    text = refused(msg, herald.registry, datetime(2026, 8, 1, 9, tzinfo=UTC))
    assert text == (f"{SAMPLE}:{line_of('  at: 2026-07-04')}:3: schedule.at: schedule.at 2026-07-04T13:30:00+00:00 "
                    "is before now (2026-08-01T09:00:00+00:00)")


def test_a_send_exactly_now_or_later_is_fine(herald):
    msg = herald.load_message(SAMPLE)
    assert Pipeline(msg, herald.registry, at=AT).base_send_at == AT
    india = timezone(timedelta(hours=5, minutes=30))
    assert Pipeline(msg, herald.registry, at=datetime(2026, 7, 4, 19, tzinfo=india)).base_send_at == AT


def test_an_ended_campaign_is_refused(herald):
    msg = replace(herald.load_message(SAMPLE), schedule=Schedule("immediate"))
    text = refused(msg, herald.registry, datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    assert text.startswith(f"{SAMPLE}:{line_of('campaign:')}:")
    assert text.endswith("campaign summer-2026 ended on 2026-12-31, before now (2027-01-01T00:30:00+00:00)")
    Pipeline(msg, herald.registry, at=datetime(2026, 12, 31, 23, 59, tzinfo=UTC))  # its last day is fine


def test_a_recurring_schedule_with_no_run_left_is_refused(registry):
    msg = Message("m", "M", Campaign("c", starts=date(2026, 1, 1), ends=date(2026, 12, 31)),
                  creatives=(Creative("sms", "default", {"body": "Hi {{ optout }}"}),),
                  schedule=Schedule("recurring", datetime(2026, 1, 5, 9, tzinfo=UTC), rrule="FREQ=WEEKLY;COUNT=3"))
    with pytest.raises(MessageFileError, match=r"no occurrence of schedule.rrule 'FREQ=WEEKLY;COUNT=3' is at or after "
                                               r"now \(2026-02-01T00:00:00\+00:00\)"):
        evaluate(msg, [Customer("a", {"phone": "+14155550123"})], at=datetime(2026, 2, 1, tzinfo=UTC),
                 registry=registry)


def test_a_message_built_in_code_is_refused_too(registry):
    msg = Message("m", "M", Campaign("c"), creatives=(Creative("sms", "default", {"body": "Hi {{ optout }}"}),),
                  schedule=Schedule("at", datetime(2026, 7, 1, tzinfo=UTC)))
    assert refused(msg, registry, AT) == ("schedule.at: schedule.at 2026-07-01T00:00:00+00:00 is before now "
                                          "(2026-07-04T13:30:00+00:00)")
