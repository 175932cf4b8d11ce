"""Facts for rules: customer fields, ``time.*`` in the customer's time zone, ``message.*``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.model import Customer

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


def time_facts(at: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """``time.*`` facts for the instant ``at`` seen in ``tz`` (DST-correct: zoneinfo does the offsets)."""
    local = at.astimezone(tz)
    return {
        "time.local_hour": local.hour,
        "time.local_minute": local.minute,
        "time.weekday": WEEKDAYS[local.weekday()],
        "time.date": local.date().isoformat(),
    }


class FactBuilder:
    """Builds the flat fact mapping of each recipient for one evaluation instant.

    ``time.*`` facts depend only on the time zone at a fixed instant, so they are computed once per zone.
    Customers without a (valid) time zone use ``default_tz``.
    """

    def __init__(self, at: datetime, message_facts: Mapping[str, Any], default_tz: str = "UTC"):
        if at.tzinfo is None:
            raise ValueError("the evaluation time must carry a time zone")
        self.at = at.astimezone(UTC)
        self.default = zone(default_tz) or ZoneInfo("UTC")
        self._message = {k: v for k, v in message_facts.items() if v is not None}
        self._by_zone: dict[str | None, dict[str, Any]] = {}

    def zone_of(self, customer: Customer) -> ZoneInfo:
        """The customer's zone, or the default."""
        return zone(customer.attributes.get("timezone")) or self.default

    def time(self, tz_name: str | None) -> dict[str, Any]:
        """The cached ``time.*`` (and ``message.*``) facts for a zone name."""
        cached = self._by_zone.get(tz_name)
        if cached is None:
            cached = {**time_facts(self.at, zone(tz_name) or self.default), **self._message}
            self._by_zone[tz_name] = cached
        return cached

    def facts(self, customer: Customer) -> dict[str, Any]:
        """Every fact of one customer (flat, dotted keys; missing values left out)."""
        attrs = customer.attributes
        cached = self._by_zone.get(attrs.get("timezone"))
        out = (cached if cached is not None else self.time(attrs.get("timezone"))).copy()
        out["customer.id"] = customer.id
        names = _PREFIXED
        for key, value in attrs.items():
            if value is not None:
                name = names.get(key)
                if name is None:
                    name = names[key] = "customer." + key
                out[name] = value
        return out


_PREFIXED: dict[str, str] = {}  # attribute name -> "customer." + name, interned once
