"""Quiet hours: a send that would land inside the recipient's quiet window moves to the window's end.

The window comes from ``message.schedule.quiet_hours`` (``("21:00", "09:00")``), else from
``message.optimizers["quiet_hours"]`` (``{start: "21:00", end: "09:00"}``), else from the plugin's
settings (an org default). Times are the recipient's local time (``customer.timezone``; the plugin
setting ``default_timezone``, else UTC, when unknown or invalid). Windows may cross midnight. This step
never drops a recipient and never re-decides: it only moves ``send_at``, never earlier, DST-exactly (an
end in a spring-forward gap is the first instant after the gap; see ``engine.scheduling``). The ``time.*``
facts stay those of the planned send instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine import (
    DecisionDraft,
    EvaluationContext,
    Issue,
    Message,
    defer_for_quiet_hours,
    hookimpl,
    parse_hhmm,
)
from engine import zone as _zone

if TYPE_CHECKING:
    import polars as pl

    from engine import ColumnarContext


class QuietHours:
    """Step 7 (order 90): after every choice is made, only the send time moves."""

    name = "quiet_hours"
    order = 90

    def __init__(self, settings: Mapping[str, Any]):
        problems = settings_problems(settings)
        if problems:
            raise ValueError("; ".join(problems))
        self.default_window = _window(settings)
        self.default_zone = _zone(settings.get("default_timezone")) or ZoneInfo("UTC")

    def window(self, message: Message) -> tuple[str, str] | None:
        """The quiet window that applies to ``message`` (``None``: inactive)."""
        if message.schedule.quiet_hours:
            return tuple(message.schedule.quiet_hours)  # type: ignore[return-value]
        return _window(message.optimizers.get(self.name) or {}) or self.default_window

    def validate(self, message: Message) -> list[Issue]:
        """``start`` and ``end`` are local times HH:MM."""
        own = message.optimizers.get(self.name) or {}
        issues = []
        for key in ("start", "end"):
            if key in own:
                try:
                    parse_hhmm(str(own[key]))
                except ValueError as exc:
                    issues.append(Issue(key, "time_format", str(exc)))
        if own.get("start") and own.get("start") == own.get("end"):
            issues.append(Issue("end", "time_format", "quiet hours must not start and end at the same time"))
        return issues

    def active(self, message: Message) -> bool:
        """Whether quiet hours apply to ``message``."""
        return self.window(message) is not None

    def moved(self, send_at: datetime, window: tuple[str, str], tz_name: str | None) -> datetime:
        """``send_at`` deferred out of ``window`` in the time zone ``tz_name``."""
        return _defer(send_at, window, _zone(tz_name) or self.default_zone)

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Move ``draft.send_at`` to the next allowed local time, tracing the move."""
        window = self.window(ctx.message)
        if window is None or draft.send_at is None:
            return
        tz_name = draft.customer.attributes.get("timezone")
        later = self.moved(draft.send_at, window, tz_name)
        if later != draft.send_at:
            draft.note(self.name, "deferred", was=draft.send_at.isoformat(), to=later.isoformat(),
                       window=list(window), timezone=str(_zone(tz_name) or self.default_zone))
            draft.send_at = later

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same move over a polars frame (the send instant and ``customer.timezone``, cached per pair)."""
        import polars as pl

        window = self.window(ctx.message)
        if window is None:
            return frame
        tz = pl.col("customer.timezone") if "customer.timezone" in ctx.schema else pl.lit(None)
        pair = pl.struct(ctx.send_at.alias("at"), tz.cast(pl.String).alias("tz"))
        moved = pair.map_elements(lambda p: None if p["at"] is None else self.moved(p["at"], window, p["tz"]),
                                  return_dtype=pl.Datetime("us", "UTC"))
        return ctx.set_send_at(frame, moved)


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with the org-wide settings, each starting with the setting's name (empty: fine):
    ``start`` and ``end`` are quoted local times HH:MM, both or neither, not equal; ``default_timezone`` is an
    IANA zone."""
    out = []
    given = {k: settings.get(k) for k in ("start", "end")}
    for key, value in given.items():
        if value is None:
            other = "end" if key == "start" else "start"
            if given[other] is not None:
                out.append(f"{key}: missing; quiet hours need both start and end (HH:MM)")
            continue
        try:
            if not isinstance(value, str):
                raise ValueError
            parse_hhmm(value)
        except ValueError:
            hint = " (YAML reads an unquoted 21:00 as a number: quote it)" if isinstance(value, int) else ""
            out.append(f"{key}: a local time \"HH:MM\" from 00:00 to 23:59, not {value!r}{hint}")
    if not out and given["start"] is not None and given["start"] == given["end"]:
        out.append("end: start and end must differ (quiet hours from a time to the same time are empty)")
    tz = settings.get("default_timezone")
    if tz is not None and (not isinstance(tz, str) or _zone(tz) is None):
        out.append(f"default_timezone: an IANA time zone such as Asia/Kolkata, not {tz!r}")
    return out


@lru_cache(maxsize=4096)
def _defer(send_at: datetime, window: tuple[str, str], tz: ZoneInfo) -> datetime:
    return defer_for_quiet_hours(send_at, window, tz)


def _window(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    start, end = settings.get("start"), settings.get("end")
    return (str(start), str(end)) if start and end else None


@hookimpl
def register_optimizers(register, settings):
    """Register the quiet-hours step (plugin settings: org ``start``/``end``, ``default_timezone``)."""
    register(QuietHours(settings))
