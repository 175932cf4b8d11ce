"""Frequency caps (communication limits): at most N messages per day / week / month, per channel or overall.

Limits come from the plugin's settings (org-wide, ``limits: [...]``) plus ``message.optimizers
["frequency_cap"]["limits"]``; a message may opt out of the org limits with ``{enabled: false}``. A limit is
``{channel: sms, period: week, max: 3}``; without ``channel`` (or ``channel: overall``) it counts every
channel. Periods follow the Engage+ calendar in the plugin's ``timezone`` (default UTC): a calendar day,
a Sunday-to-Saturday week, a calendar month — the period containing the draft's ``send_at``.

The send history is ``ctx.history`` (customer id → ``[{"channel", "sent_at"}, …]``). An overall cap
excludes the recipient (reason ``frequency_cap``); a channel cap drops that channel, and when that leaves
no channel the recipient is excluded with ``frequency_cap`` too. There is no columnar form: the history is
per recipient, so an active cap keeps evaluation on the per-recipient path (``active(message)`` says when).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine import DecisionDraft, EvaluationContext, Issue, Message, hookimpl

PERIODS = ("day", "week", "month")
OVERALL = "overall"


def period_start(at: datetime, period: str, tz: ZoneInfo) -> datetime:
    """The start (UTC) of the day, Sunday-start week or month containing ``at`` in ``tz``."""
    local = at.astimezone(tz)
    day = local.date()
    if period == "week":
        day -= timedelta(days=(day.weekday() + 1) % 7)
    elif period == "month":
        day = day.replace(day=1)
    elif period != "day":
        raise ValueError(f"period is one of {', '.join(PERIODS)}, not {period!r}")
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_end(start: datetime, period: str, tz: ZoneInfo) -> datetime:
    """The start of the next period."""
    local = start.astimezone(tz).date()
    if period == "day":
        nxt = local + timedelta(days=1)
    elif period == "week":
        nxt = local + timedelta(days=7)
    else:
        nxt = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


def _instant(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_limits(limits: Any) -> list[str]:
    """Problems with a list of limits (``limits[i].field: why``); empty when valid."""
    if not isinstance(limits, Sequence) or isinstance(limits, str):
        return ["limits: a list of {channel, period, max}"]
    out = []
    for i, limit in enumerate(limits):
        if not isinstance(limit, Mapping):
            out.append(f"limits[{i}]: a mapping {{channel, period, max}}")
            continue
        if limit.get("period") not in PERIODS:
            out.append(f"limits[{i}].period: one of {', '.join(PERIODS)}")
        m = limit.get("max")
        if not isinstance(m, int) or isinstance(m, bool) or m < 0:
            out.append(f"limits[{i}].max: a whole number of messages ≥ 0")
    return out


class FrequencyCap:
    """Eligibility by send history (order 55: after channel_priority has chosen the candidate channels)."""

    name = "frequency_cap"
    order = 55

    def __init__(self, settings: Mapping[str, Any]):
        self.org_limits = tuple(settings.get("limits") or ())
        problems = check_limits(list(self.org_limits))
        if problems:
            raise ValueError("frequency_cap settings: " + "; ".join(problems))
        self.tz = ZoneInfo(settings.get("timezone", "UTC"))

    def limits(self, message: Message) -> tuple[Mapping[str, Any], ...]:
        """The limits that apply to ``message`` (empty: inactive)."""
        own = message.optimizers.get(self.name) or {}
        base = () if own.get("enabled", True) is False else self.org_limits
        extra = tuple(own.get("limits") or ())
        problems = check_limits(list(extra))
        if problems:
            raise ValueError(f"message {message.id}: optimizers.frequency_cap." + "; ".join(problems))
        return base + extra

    def validate(self, message: Message) -> list[Issue]:
        """The message's extra ``limits`` (each ``{channel?, period, max}``)."""
        own = message.optimizers.get(self.name) or {}
        problems = check_limits(list(own.get("limits") or ())) if "limits" in own else []
        return [Issue(p.split(":", 1)[0], "invalid", p.split(":", 1)[1].strip()) for p in problems]

    def active(self, message: Message) -> bool:
        """Whether any limit applies to ``message``."""
        return bool(self.limits(message))

    def count(self, sends: Iterable[Mapping[str, Any]], channel: str | None, period: str, at: datetime) -> int:
        """Sends (on ``channel``, or on any channel) in the period containing ``at``."""
        start = period_start(at, period, self.tz)
        end = period_end(start, period, self.tz)
        n = 0
        for send in sends:
            when = _instant(send.get("sent_at"))
            if when is not None and start <= when < end and (channel is None or send.get("channel") == channel):
                n += 1
        return n

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Exclude on an overall cap; drop capped channels (excluding when none is left)."""
        limits = ctx.state.get(self.name)
        if limits is None:
            limits = ctx.state[self.name] = self.limits(ctx.message)
        sends = ctx.history.get(draft.customer.id) if limits else None
        if not sends:
            return
        at = draft.send_at or ctx.at
        had_channels = bool(draft.channels)
        for limit in limits:
            channel = limit.get("channel") or OVERALL
            if channel != OVERALL and channel not in draft.channels:
                continue
            n = self.count(sends, None if channel == OVERALL else channel, limit["period"], at)
            if n < limit["max"]:
                continue
            figures = {"period": limit["period"], "max": limit["max"], "sent": n}
            if channel == OVERALL:
                draft.exclude("frequency_cap", self.name, channel=OVERALL, **figures)
                return
            draft.drop_channel(channel, self.name, "frequency_cap", **figures)
        if had_channels and not draft.channels:
            draft.exclude("frequency_cap", self.name, why="every channel is capped")


@hookimpl
def register_optimizers(register, settings):
    """Register the frequency cap step (plugin settings: org-wide ``limits`` and the calendar ``timezone``)."""
    register(FrequencyCap(settings))
