"""Recurring schedules: an RRULE (python-dateutil) from schedule.at or the campaign start, inside the
campaign window; invalid rules are load errors with line:column; the next run is the one evaluated."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from engine import Campaign, Schedule
from engine.errors import MessageFileError
from engine.scheduling import next_runs
from tests.conftest import EXAMPLES

BASE = (EXAMPLES / "summer-sale.message.yaml").read_text()
AT_LINE = "  kind: at\n  at: 2026-07-04T13:30:00+00:00   # 19:00 in Kolkata: the evening variant\n"
CAMPAIGN = "starts: 2026-06-01, ends: 2026-12-31"


@pytest.fixture
def write(tmp_path):
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())

    def _write(schedule: str, campaign: str = CAMPAIGN):
        assert AT_LINE in BASE and CAMPAIGN in BASE
        path = tmp_path / "weekly.message.yaml"
        path.write_text(BASE.replace(AT_LINE, schedule).replace(CAMPAIGN, campaign))
        return path

    return _write


def problems(herald, path) -> list[str]:
    with pytest.raises(MessageFileError) as info:
        herald.load_message(path)
    return [str(p) for p in info.value.problems]


def rrule_line(path) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "rrule:" in line)


def test_a_weekly_rule_loads_and_lists_its_next_runs(herald, write):
    msg = herald.load_message(write("  kind: recurring\n  at: 2026-07-06T09:00:00+00:00\n  rrule: FREQ=WEEKLY;BYDAY=MO\n"))
    runs = next_runs(msg.schedule, msg.campaign, datetime(2026, 7, 8, tzinfo=UTC), 5)
    assert runs == [datetime(2026, 7, d, 9, tzinfo=UTC) for d in (13, 20, 27)] + [
        datetime(2026, 8, d, 9, tzinfo=UTC) for d in (3, 10)]
    # bounded by the campaign's end: the last Monday of 2026 is the last run
    assert next_runs(msg.schedule, msg.campaign, datetime(2026, 12, 20, tzinfo=UTC), 5) == [
        datetime(2026, 12, 21, 9, tzinfo=UTC), datetime(2026, 12, 28, 9, tzinfo=UTC)]


def test_without_schedule_at_the_rule_starts_with_the_campaign(herald, write):
    msg = herald.load_message(write("  kind: recurring\n  rrule: RRULE:FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=10\n"))
    assert next_runs(msg.schedule, msg.campaign, datetime(2026, 1, 1, tzinfo=UTC), 2) == [
        datetime(2026, 6, 1, 10, tzinfo=UTC), datetime(2026, 7, 1, 10, tzinfo=UTC)]


@pytest.mark.parametrize("rule, what", [
    ("FREQ=WEEKLYX", "invalid RRULE 'FREQ=WEEKLYX'"),
    ("BYDAY=MO", "has no FREQ"),
    ("FREQ=WEEKLY;BYDAY", "NAME=VALUE"),
    ("FREQ=DAILY;BYHOUR=25", "invalid RRULE"),
    ("'DTSTART:20260701T100000Z\\nRRULE:FREQ=DAILY'", "the start is schedule.at"),
    ("FREQ=DAILY;UNTIL=20270115T000000Z", "outside the campaign window"),
    ("FREQ=DAILY;COUNT=400", "outside the campaign window"),
    ("FREQ=MINUTELY", "more than 10000 occurrences"),
    ("FREQ=HOURLY;BYMONTH=2,4;BYMONTHDAY=31,-31", "never occurs"),  # quick, not a search until year 9999
])
def test_an_invalid_rule_is_a_load_error_at_its_line_and_column(herald, write, rule, what):
    path = write(f"  kind: recurring\n  at: 2026-07-06T09:00:00+00:00\n  rrule: {rule}\n")
    (msg,) = problems(herald, path)
    assert msg.startswith(f"{path}:{rrule_line(path)}:3: schedule.rrule: ") and what in msg, msg


def test_a_recurring_schedule_must_end(herald, write):
    path = write("  kind: recurring\n  at: 2026-07-06T09:00:00+00:00\n  rrule: FREQ=WEEKLY\n",
                 campaign="starts: 2026-06-01")
    (msg,) = problems(herald, path)
    assert "a recurring schedule must end" in msg and f":{rrule_line(path)}:3:" in msg
    # with COUNT it ends
    herald.load_message(write("  kind: recurring\n  at: 2026-07-06T09:00:00+00:00\n  rrule: FREQ=WEEKLY;COUNT=4\n",
                              campaign="starts: 2026-06-01"))


def test_a_first_run_before_the_campaign_is_an_error(herald, write):
    (msg,) = problems(herald, write("  kind: recurring\n  at: 2026-05-04T09:00:00+00:00\n  rrule: FREQ=WEEKLY\n"))
    assert "2026-05-04T09:00:00+00:00 is outside the campaign window 2026-06-01 – 2026-12-31" in msg


def test_a_rule_needs_kind_recurring_and_a_start(herald, write):
    (msg,) = problems(herald, write("  kind: immediate\n  rrule: FREQ=WEEKLY\n"))
    assert "an RRULE needs kind: recurring" in msg
    (msg,) = problems(herald, write("  kind: recurring\n  rrule: FREQ=WEEKLY\n", campaign="ends: 2026-12-31"))
    assert "needs a start: give schedule.at or campaign.starts" in msg


def test_next_runs_of_one_off_schedules():
    camp = Campaign("c", starts=date(2026, 1, 1), ends=date(2026, 12, 31))
    one = Schedule("at", datetime(2026, 7, 4, tzinfo=UTC))
    assert next_runs(one, camp, datetime(2026, 7, 1, tzinfo=UTC)) == [datetime(2026, 7, 4, tzinfo=UTC)]
    assert next_runs(one, camp, datetime(2026, 7, 5, tzinfo=UTC)) == []
    now = datetime(2026, 7, 1, 8, tzinfo=UTC)
    assert next_runs(Schedule("immediate"), camp, now) == [now]


def test_quiet_hours_that_start_and_end_together_are_a_load_error(herald, write):
    path = write('  kind: at\n  at: 2026-07-04T13:30:00+00:00\n  quiet_hours: ["21:00", "21:00"]\n')
    (msg,) = problems(herald, path)
    assert "schedule.quiet_hours: quiet hours must not start and end at the same time" in msg


def test_org_quiet_hours_that_start_and_end_together_are_refused():
    from plugins.optimizers.quiet_hours import QuietHours

    with pytest.raises(ValueError, match="start and end must differ"):
        QuietHours({"start": "22:00", "end": "22:00"})
