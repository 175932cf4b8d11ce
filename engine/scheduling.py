"""Schedules → send times: the message's run time, the recipient's local send time and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.model import Schedule


def parse_hhmm(text: str) -> time:
    """``"21:30"`` → ``time(21, 30)``; ``ValueError`` otherwise."""
    hh, _, mm = text.partition(":")
    if not (hh.isdigit() and mm.isdigit() and len(mm) == 2 and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return time(int(hh), int(mm))


def run_time(schedule: Schedule, at: datetime) -> datetime:
    """When the run starts: the scheduled instant for ``at`` schedules, otherwise ``at`` (immediate)."""
    return schedule.at if schedule.kind == "at" and schedule.at is not None else at


def local_send_time(base: datetime, local: str | None, tz: ZoneInfo) -> datetime:
    """``base``, or the first moment at or after ``base`` when the recipient's clock shows ``local``."""
    if not local:
        return base
    wanted = parse_hhmm(local)
    day = base.astimezone(tz).date()
    for offset in range(3):
        candidate = datetime.combine(day + timedelta(days=offset), wanted, tzinfo=tz)
        # a wall time skipped by a DST jump is normalised by the UTC round trip
        candidate = candidate.astimezone(UTC).astimezone(tz)
        if candidate >= base:
            return candidate.astimezone(UTC)
    raise AssertionError("unreachable: a local time recurs within two days")


def defer_for_quiet_hours(when: datetime, quiet: tuple[str, str], tz: ZoneInfo) -> datetime:
    """Move ``when`` to the end of the quiet window when it falls inside it (windows may cross midnight)."""
    start, end = parse_hhmm(quiet[0]), parse_hhmm(quiet[1])
    local = when.astimezone(tz)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return when
    day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    moved = datetime.combine(day, end, tzinfo=tz).astimezone(UTC).astimezone(tz)
    return moved.astimezone(UTC)
