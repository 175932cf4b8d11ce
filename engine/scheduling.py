"""Schedules → send times: the message's run time, the recipient's local send time and quiet hours.

Every wall-clock time is resolved DST-exactly with zoneinfo: a wall time that a spring-forward gap skips
resolves to the first valid instant after the gap (02:30 → 03:00 in New York); a wall time that a
fall-back overlap repeats has two instants, the earlier first. A local send time or a quiet-hours deferral
is the first such instant at or after the planned one, so nothing ever moves earlier than planned.

A ``recurring`` schedule is an RFC 5545 RRULE (python-dateutil) whose DTSTART is ``schedule.at``, else the
campaign's start at 00:00 UTC; every occurrence lies inside the campaign window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import islice
from typing import NoReturn
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from engine.errors import MessageFileError, Problem, ValidationFailed
from engine.model import Campaign, Message, Schedule
from engine.sourcefile import read_source

#: a recurring schedule may have at most this many occurrences inside the campaign window
MAX_OCCURRENCES = 10_000


def parse_hhmm(text: str) -> time:
    """``"21:30"`` → ``time(21, 30)``; ``ValueError`` otherwise."""
    hh, _, mm = text.partition(":")
    if not (hh.isdigit() and mm.isdigit() and len(mm) == 2 and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return time(int(hh), int(mm))


@lru_cache(maxsize=4096)
def wall_instants(day: date, wall: time, tz: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants at which clocks in ``tz`` show ``wall`` on ``day``, earliest first.

    One instant normally; two in a fall-back overlap; in a spring-forward gap (the wall time never shows)
    the first valid instant after the gap.
    """
    first = datetime.combine(day, wall, tzinfo=tz)  # fold=0: the offset before a transition
    early, late = first.astimezone(UTC), first.replace(fold=1).astimezone(UTC)
    if early == late:
        return (early,)
    if early < late:  # overlap: the wall time shows twice
        return early, late
    return (_transition(late, early, tz),)  # gap: late..early brackets the jump


def _transition(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in ``(lo, hi]`` whose UTC offset is ``hi``'s (the offset changes once in between)."""
    after = hi.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi


def first_wall_time_after(base: datetime, wall: time, tz: ZoneInfo, *, strictly: bool = False) -> datetime:
    """The first instant at (or strictly after) ``base`` at which clocks in ``tz`` show ``wall`` (see
    :func:`wall_instants` for gaps and overlaps)."""
    day = base.astimezone(tz).date()
    for offset in range(3):
        for candidate in wall_instants(day + timedelta(days=offset), wall, tz):
            if candidate > base or (candidate == base and not strictly):
                return candidate
    raise AssertionError("unreachable: a wall time recurs within two days")


def local_send_time(base: datetime, local: str | None, tz: ZoneInfo) -> datetime:
    """``base``, or the first moment at or after ``base`` when the recipient's clock shows ``local``."""
    if not local:
        return base
    return first_wall_time_after(base, parse_hhmm(local), tz)


def in_window(t: time, start: time, end: time) -> bool:
    """Whether the wall time ``t`` is inside the window ``[start, end)`` (which may cross midnight)."""
    return (start <= t < end) if start < end else (t >= start or t < end)


def defer_for_quiet_hours(when: datetime, quiet: tuple[str, str], tz: ZoneInfo) -> datetime:
    """``when``, or the window's end when ``when`` falls inside the quiet window (local wall times; windows
    may cross midnight): the first instant after ``when`` at which the clock shows the end and that is
    outside the window. Never earlier than ``when``; DST-exact (see :func:`wall_instants`)."""
    start, end = parse_hhmm(quiet[0]), parse_hhmm(quiet[1])
    if start == end:
        raise ValueError(f"quiet hours {quiet[0]}–{quiet[1]} start and end at the same time")
    local = when.astimezone(tz)
    if not in_window(local.time(), start, end):
        return when
    day = local.date()
    for offset in range(3):
        for candidate in wall_instants(day + timedelta(days=offset), end, tz):
            if candidate > when and not in_window(candidate.astimezone(tz).time(), start, end):
                return candidate
    raise AssertionError("unreachable: a quiet window ends within two days")


def recurrence_start(schedule: Schedule, campaign: Campaign) -> datetime | None:
    """The DTSTART of a recurring schedule: ``schedule.at``, else the campaign's start at 00:00 UTC."""
    if schedule.at is not None:
        return schedule.at
    if campaign.starts is not None:
        return datetime.combine(campaign.starts, time(0), tzinfo=UTC)
    return None


def recurrence(schedule: Schedule, campaign: Campaign) -> rrule:
    """The parsed RRULE of a recurring schedule, bounded by the campaign's end; ``ValueError`` (with what to
    fix) when the rule is invalid, has no start, never ends or leaves the campaign window."""
    return _recurrence(schedule.rrule or "", recurrence_start(schedule, campaign), campaign.starts, campaign.ends)


@lru_cache(maxsize=256)
def _recurrence(text: str, start: datetime | None, starts: date | None, ends: date | None) -> rrule:
    if start is None:
        raise ValueError("a recurring schedule needs a start: give schedule.at or campaign.starts")
    if start.tzinfo is None:
        raise ValueError("schedule.at needs a time zone offset, e.g. +05:30")
    rule, names = _parse_rrule(text, start)
    if not names & {"UNTIL", "COUNT"}:
        if ends is None:
            raise ValueError("a recurring schedule must end: give the RRULE an UNTIL or COUNT, or the campaign an end date")
        rule = rule.replace(until=datetime.combine(ends + timedelta(days=1), time(0), tzinfo=start.tzinfo)
                            - timedelta(microseconds=1))
    runs = list(islice(rule, MAX_OCCURRENCES + 1))
    if not runs:
        raise ValueError(f"the RRULE {text!r} has no occurrence")
    if len(runs) > MAX_OCCURRENCES:
        raise ValueError(f"the RRULE {text!r} has more than {MAX_OCCURRENCES} occurrences in the campaign window")
    for run in (runs[0], runs[-1]):
        if (starts and run.date() < starts) or (ends and run.date() > ends):
            raise ValueError(f"the occurrence {run.isoformat()} is outside the campaign window {starts} – {ends}")
    return rule


def _parse_rrule(text: str, start: datetime) -> tuple[rrule, set[str]]:
    """The rule of ``text`` (``FREQ=…;…``, optionally prefixed ``RRULE:``) from ``start``, and its part names."""
    body = text.strip()
    body = body[len("RRULE:"):] if body.upper().startswith("RRULE:") else body
    if not body or "\n" in body or ":" in body:
        raise ValueError(f"expected one RRULE such as 'FREQ=WEEKLY;BYDAY=MO' (the start is schedule.at), got {text!r}")
    parts = [p for p in body.split(";") if p]
    if any("=" not in p for p in parts):
        raise ValueError(f"expected NAME=VALUE parts separated by ';', got {text!r}")
    names = {p.split("=", 1)[0].strip().upper() for p in parts}
    if "FREQ" not in names:
        raise ValueError(f"the RRULE {text!r} has no FREQ")
    _check_month_days(dict(p.split("=", 1) for p in parts), text)
    try:
        rule = rrulestr(body, dtstart=start)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ValueError(f"invalid RRULE {text!r}: {exc}") from None
    if not isinstance(rule, rrule):
        raise ValueError(f"expected one RRULE, got {text!r}")
    return rule, names


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_month_days(values: dict[str, str], text: str) -> None:
    """Refuse BYMONTHDAY values that no month of BYMONTH has (Feb 30): dateutil would search until year 9999."""
    named = {k.strip().upper(): v for k, v in values.items()}
    if "BYMONTHDAY" not in named:
        return
    try:
        days = [abs(int(d)) for d in named["BYMONTHDAY"].split(",")]
        months = [int(m) for m in named["BYMONTH"].split(",")] if "BYMONTH" in named else list(range(1, 13))
    except ValueError:
        return  # dateutil reports the malformed number
    if not any(0 < d <= _MONTH_DAYS[m - 1] for d in days for m in months if 1 <= m <= 12):
        raise ValueError(f"the RRULE {text!r} never occurs: no month of BYMONTH has the days of BYMONTHDAY")


def next_runs(schedule: Schedule, campaign: Campaign, at: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` run times at or after ``at``: the occurrences of a recurring schedule, the
    ``at`` of a one-off (when not past), ``at`` itself for an immediate one."""
    if schedule.kind == "recurring":
        rule = recurrence(schedule, campaign)
        first = rule.after(at, inc=True)
        if first is None:
            return []
        return list(islice(rule.xafter(first, count=count, inc=True), count))
    when = run_time_or_none(schedule, campaign, at)
    return [when] if when is not None and count > 0 else []


def run_time_or_none(schedule: Schedule, campaign: Campaign, at: datetime) -> datetime | None:
    """When the run evaluated "now" (``at``) starts: the scheduled instant of an ``at`` schedule (``None``
    when it is before ``at``), the next occurrence of a recurring one (``None`` when none is left), ``at``
    for an immediate one."""
    if schedule.kind == "at" and schedule.at is not None:
        return schedule.at if schedule.at >= at else None
    if schedule.kind == "recurring":
        return recurrence(schedule, campaign).after(at, inc=True)
    return at


def run_time(schedule: Schedule, at: datetime, campaign: Campaign | None = None) -> datetime:
    """When the run starts: the scheduled instant for ``at`` schedules, the next occurrence at or after
    ``at`` for recurring ones (with their ``campaign``), otherwise ``at`` (immediate)."""
    if schedule.kind == "at" and schedule.at is not None:
        return schedule.at
    if schedule.kind == "recurring":
        when = run_time_or_none(schedule, campaign or Campaign(""), at)
        if when is None:
            raise ValueError("no occurrence of the recurring schedule is left")
        return when
    return at


def check_schedule(message: Message, at: datetime) -> None:
    """Refuse, before any evaluation, a message whose campaign has ended, whose send time is before ``at``
    (now), or that is sent immediately before its campaign starts: ``MessageFileError`` naming the dates and
    the schedule field's place in the file."""
    if at.tzinfo is None:
        raise ValueError("the evaluation time must carry a time zone")
    s, c = message.schedule, message.campaign
    now = at.isoformat()
    if c.ends is not None and c.ends < at.date():
        _refuse(message, f"campaign {c.id} ended on {c.ends}, before now ({now})", ("message", "campaign", "ends"),
                "campaign_ended")
    if s.kind == "immediate" and c.starts is not None and at.date() < c.starts:
        _refuse(message, f"schedule immediate sends now ({now}), before the campaign starts ({c.starts}); "
                         "schedule it (kind: at) or evaluate from the start date", ("schedule", "kind"),
                "before_campaign")
    if s.kind == "at" and s.at is not None and s.at < at:
        _refuse(message, f"schedule.at {s.at.isoformat()} is before now ({now})", ("schedule", "at"), "send_in_past")
    if s.kind == "recurring":
        try:
            left = run_time_or_none(s, c, at)
        except ValueError as exc:
            _refuse(message, str(exc), ("schedule", "rrule"), "rrule")
        if left is None:
            _refuse(message, f"no occurrence of schedule.rrule {s.rrule!r} is at or after now ({now}); "
                             f"the campaign ends {c.ends}", ("schedule", "rrule"), "send_in_past")


def _refuse(message: Message, text: str, loc: Sequence[str], code: str) -> NoReturn:
    raise MessageFileError([_problem_at(message, text, loc, code)],
                           f"{message.source or message.id}: cannot be sent as of now")


def _problem_at(message: Message, text: str, loc: Sequence[str], code: str) -> Problem:
    """A Problem at ``loc`` in the message's file (line and column when the file can still be read)."""
    label = ".".join(loc)
    if message.source:
        try:
            return read_source(message.source).problem(text, loc, code, label)
        except (ValidationFailed, OSError):
            pass
    return Problem(text, code, message.source, path=label)
