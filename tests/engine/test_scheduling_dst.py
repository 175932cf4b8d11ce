"""Local send times and quiet hours are DST-exact, in real zones: a wall time in a spring-forward gap moves
to the first instant after the gap, an overlap takes its first occurrence that day, nothing moves earlier."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scheduling import defer_for_quiet_hours, local_send_time, parse_hhmm

NY, LONDON = ZoneInfo("America/New_York"), ZoneInfo("Europe/London")
LORD_HOWE, KOLKATA = ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")


def in_window(t: time, start: time, end: time) -> bool:
    """The quiet window [start, end) in wall time, across midnight when end <= start."""
    return (start <= t < end) if start < end else (t >= start or t < end)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- local send times ------------------------------------------------------------------------------------

def test_a_local_time_in_the_spring_forward_gap_is_the_first_instant_after_it():
    # 2026-03-08 New York: 02:00 EST jumps to 03:00 EDT; 02:30 never shows
    sent = local_send_time(utc(2026, 3, 8, 5, 0), "02:30", NY)  # planned: 00:00 EST
    assert sent == utc(2026, 3, 8, 7, 0)
    assert sent.astimezone(NY).strftime("%H:%M %Z") == "03:00 EDT"


def test_london_gap_and_lord_howe_half_hour_gap():
    # 2026-03-29 London: 01:00 GMT → 02:00 BST
    assert local_send_time(utc(2026, 3, 28, 23, 0), "01:30", LONDON) == utc(2026, 3, 29, 1, 0)  # 02:00 BST
    # 2026-10-04 Lord Howe: 02:00 (+10:30) → 02:30 (+11): 02:15 never shows
    sent = local_send_time(utc(2026, 10, 3, 12, 0), "02:15", LORD_HOWE)
    assert sent == utc(2026, 10, 3, 15, 30)
    assert sent.astimezone(LORD_HOWE).strftime("%H:%M") == "02:30"


def test_a_local_time_in_the_fall_back_overlap_takes_the_first_occurrence():
    # 2026-11-01 New York: 01:00–01:59 shows twice (EDT, then EST)
    assert local_send_time(utc(2026, 11, 1, 4, 0), "01:30", NY) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    # Lord Howe 2026-04-05: 02:00 (+11) → 01:30 (+10:30); 01:45 shows twice
    assert local_send_time(utc(2026, 4, 4, 12, 0), "01:45", LORD_HOWE) == utc(2026, 4, 4, 14, 45)


def test_between_the_two_occurrences_the_same_day_is_kept_not_the_next_day():
    planned = utc(2026, 11, 1, 5, 45)  # 01:45 EDT: the first 01:30 has passed, the second has not
    assert local_send_time(planned, "01:30", NY) == utc(2026, 11, 1, 6, 30)  # 01:30 EST, same day


def test_a_zone_without_dst_is_plain():
    assert local_send_time(utc(2026, 3, 8, 5, 0), "02:30", KOLKATA) == utc(2026, 3, 8, 21, 0)  # next 02:30 IST
    assert local_send_time(utc(2026, 3, 7, 21, 0), "02:30", KOLKATA) == utc(2026, 3, 7, 21, 0)  # exactly then


# --- quiet hours -------------------------------------------------------------------------------------------

def test_a_window_across_midnight_defers_to_its_end_the_next_morning():
    assert defer_for_quiet_hours(utc(2026, 7, 4, 17, 0), ("21:00", "09:00"), KOLKATA) == utc(2026, 7, 5, 3, 30)
    assert defer_for_quiet_hours(utc(2026, 7, 4, 20, 0), ("21:00", "09:00"), KOLKATA) == utc(2026, 7, 5, 3, 30)
    assert defer_for_quiet_hours(utc(2026, 7, 4, 5, 0), ("21:00", "09:00"), KOLKATA) == utc(2026, 7, 4, 5, 0)


def test_a_deferral_in_the_overlap_never_moves_the_send_earlier():
    # 01:10 EST (the second 01:10 of 2026-11-01) is inside 00:00–01:30; 01:30 EDT has already passed
    planned = utc(2026, 11, 1, 6, 10)
    moved = defer_for_quiet_hours(planned, ("00:00", "01:30"), NY)
    assert moved == utc(2026, 11, 1, 6, 30)  # 01:30 EST
    assert moved >= planned


def test_a_window_ending_in_a_gap_ends_at_the_first_instant_after_the_gap():
    # Lord Howe 2026-10-04: 02:15 never shows; the window 22:00–02:15 ends at 02:30 (+11)
    moved = defer_for_quiet_hours(utc(2026, 10, 3, 15, 20), ("22:00", "02:15"), LORD_HOWE)  # 01:50 (+10:30)
    assert moved == utc(2026, 10, 3, 15, 30)
    # New York 2026-03-08: 22:00–02:30 ends at 03:00 EDT
    assert defer_for_quiet_hours(utc(2026, 3, 8, 6, 30), ("22:00", "02:30"), NY) == utc(2026, 3, 8, 7, 0)


def test_when_the_first_instant_after_the_gap_is_still_quiet_the_next_days_end_is_used():
    # only 02:30–02:40 is allowed, and on 2026-03-08 that slot does not exist in New York
    moved = defer_for_quiet_hours(utc(2026, 3, 8, 6, 0), ("02:40", "02:30"), NY)  # 01:00 EST
    assert moved == utc(2026, 3, 9, 6, 30)  # 02:30 EDT the next day


def test_equal_start_and_end_is_refused():
    import pytest

    with pytest.raises(ValueError, match="same time"):
        defer_for_quiet_hours(utc(2026, 7, 4, 12, 0), ("09:00", "09:00"), KOLKATA)


ZONES = [NY, LONDON, LORD_HOWE, KOLKATA, ZoneInfo("Pacific/Apia"), ZoneInfo("America/Santiago")]
WALL = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
# instants around the 2026 transitions of these zones (and ordinary days)
AROUND = st.sampled_from([utc(2026, 3, 8, 7), utc(2026, 11, 1, 6), utc(2026, 3, 29, 1), utc(2026, 10, 25, 1),
                          utc(2026, 10, 3, 15, 30), utc(2026, 4, 4, 15), utc(2026, 7, 4, 12), utc(2026, 4, 5, 3),
                          utc(2026, 9, 6, 4)])
WHEN = st.builds(lambda base, minutes: base + timedelta(minutes=minutes), AROUND, st.integers(-36 * 60, 36 * 60))


@settings(max_examples=400, deadline=None)
@given(WHEN, WALL, WALL, st.sampled_from(ZONES))
def test_property_a_deferral_is_never_earlier_and_lands_outside_the_window(when, start, end, tz):
    if start == end:
        return
    moved = defer_for_quiet_hours(when, (start, end), tz)
    s, e = parse_hhmm(start), parse_hhmm(end)
    assert moved >= when
    assert not in_window(moved.astimezone(tz).time(), s, e)
    if not in_window(when.astimezone(tz).time(), s, e):
        assert moved == when
    assert moved - when < timedelta(days=2)


@settings(max_examples=150, deadline=None)
@given(WHEN, WALL, st.sampled_from(ZONES))
def test_property_a_local_send_time_is_never_earlier_and_shows_the_wall_time_or_follows_a_gap(base, wall, tz):
    sent = local_send_time(base, wall, tz)
    assert sent >= base and sent - base < timedelta(days=2)
    shown = sent.astimezone(tz).time()
    wanted = parse_hhmm(wall)
    if shown != wanted:  # only a gap skips the wall time: just before the result, clocks showed an earlier offset
        before = (sent - timedelta(seconds=1)).astimezone(tz)
        assert before.utcoffset() < sent.astimezone(tz).utcoffset()
        assert before.time() < wanted < shown or (wanted < shown and before.time() > shown)
    # no earlier minute at or after base showed the wall time (not the next day when today still had it)
    probe = sent - timedelta(minutes=1)
    while probe >= base:
        assert probe.astimezone(tz).time() != wanted
        probe -= timedelta(minutes=1)


def test_wall_time_parsing_rejects_non_times():
    import pytest

    assert parse_hhmm("09:05") == time(9, 5)
    for bad in ("9:5", "24:00", "12:60", "noon"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)
