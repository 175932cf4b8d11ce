"""Facts for rules: customer fields, ``time.*`` at the planned send instant in the customer's time zone,
``message.*``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ModeError
from engine.model import Customer
from engine.scheduling import local_send_time

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=1024)
def zone(name: str | None) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or ``None`` when the name is unknown or empty."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def default_zone(name: str) -> ZoneInfo:
    """The zone of customers without one (``default_tz``): an unknown name is an error, never UTC by chance."""
    found = zone(name)
    if found is None:
        raise ModeError(f"default_tz {name!r} is not an IANA time zone (e.g. UTC, Asia/Kolkata, Europe/London)")
    return found


def time_facts(at: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """``time.*`` facts for the instant ``at`` seen in ``tz`` (DST-correct: zoneinfo does the offsets).

    The pipeline passes each recipient's planned send instant, not the evaluation instant."""
    local = at.astimezone(tz)
    return {
        "time.local_hour": local.hour,
        "time.local_minute": local.minute,
        "time.weekday": WEEKDAYS[local.weekday()],
        "time.date": local.date().isoformat(),
    }


class FactBuilder:
    """Builds the flat fact mapping of each recipient, with ``time.*`` at the recipient's planned send instant.

    ``at`` is "now" (the evaluation instant); ``send_at`` is the run time (default ``at``); with
    ``local_time`` ("HH:MM") each recipient's send instant is the first moment at or after the run time
    when their clock shows it. The send instant and the ``time.*`` facts depend only on the time zone, so
    they are computed once per zone. Customers without a (valid) time zone use ``default_tz``.
    """

    def __init__(self, at: datetime, message_facts: Mapping[str, Any], default_tz: str = "UTC", *,
                 send_at: datetime | None = None, local_time: str | None = None):
        if at.tzinfo is None or (send_at is not None and send_at.tzinfo is None):
            raise ValueError("the evaluation time must carry a time zone")
        self.at = at.astimezone(UTC)
        self.send_at = self.at if send_at is None else send_at
        self.local_time = local_time
        self.default = default_zone(default_tz)
        self._message = {k: v for k, v in message_facts.items() if v is not None}
        self._by_zone: dict[str | None, tuple[dict[str, Any], datetime]] = {}

    def zone_of(self, customer: Customer) -> ZoneInfo:
        """The customer's zone, or the default."""
        return zone(customer.attributes.get("timezone")) or self.default

    def planned(self, tz_name: str | None) -> tuple[dict[str, Any], datetime]:
        """The cached ``time.*`` (and ``message.*``) facts for a zone name, and that zone's send instant."""
        cached = self._by_zone.get(tz_name)
        if cached is None:
            tz = zone(tz_name) or self.default
            send = local_send_time(self.send_at, self.local_time, tz)
            cached = ({**time_facts(send, tz), **self._message}, send)
            self._by_zone[tz_name] = cached
        return cached

    def time(self, tz_name: str | None) -> dict[str, Any]:
        """The cached ``time.*`` (and ``message.*``) facts for a zone name, at that zone's send instant."""
        return self.planned(tz_name)[0]

    def send_time(self, customer: Customer) -> datetime:
        """The customer's planned send instant (the run time, or their local send time after it)."""
        return self.planned(customer.attributes.get("timezone"))[1]

    def facts(self, customer: Customer) -> dict[str, Any]:
        """Every fact of one customer (flat, dotted keys; missing values left out)."""
        return self.facts_and_send_time(customer)[0]

    def facts_and_send_time(self, customer: Customer) -> tuple[dict[str, Any], datetime]:
        """:meth:`facts` and :meth:`send_time` together (one zone look-up: the per-recipient hot path)."""
        attrs = customer.attributes
        cached = self._by_zone.get(attrs.get("timezone"))
        if cached is None:
            cached = self.planned(attrs.get("timezone"))
        out = cached[0].copy()
        out["customer.id"] = customer.id
        names = _PREFIXED
        for key, value in attrs.items():
            if value is not None:
                name = names.get(key)
                if name is None:
                    name = names[key] = "customer." + key
                out[name] = value
        return out, cached[1]


_PREFIXED: dict[str, str] = {}  # attribute name -> "customer." + name, interned once
