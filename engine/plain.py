"""Plain-language messages for pydantic's errors on the values people mistype most (ids, names, times,
dates), so that no library text (``String should match pattern '^…$'``) reaches the user."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

ID = "an id is letters, digits, '_', '.' and '-' (starting with a letter or digit)"
RULESET_NAME = "a ruleset name is lower-case letters, digits, '_' and '-' (starting with a letter or digit)"
LOCAL_TIME = "a local time is HH:MM from 00:00 to 23:59"
DATETIME = "a date-time is ISO 8601 with an offset (2026-07-01T10:00:00+05:30)"
DATE = "a date is YYYY-MM-DD"

#: the last part of an error's location → what the value must be
EXPECTED = {"id": ID, "ruleset": RULESET_NAME, "local_time": LOCAL_TIME, "quiet_hours": LOCAL_TIME,
            "at": DATETIME, "starts": DATE, "ends": DATE}
_TYPES = ("string_pattern_mismatch", "string_type", "datetime_parsing", "datetime_from_date_parsing",
          "datetime_type", "date_parsing", "date_from_datetime_parsing", "date_type")


def plain_message(err: Mapping[str, Any]) -> str | None:
    """A plain message for a pydantic error on a known value (``None``: keep pydantic's)."""
    loc = [p for p in err.get("loc", ()) if not isinstance(p, int)]
    key = str(loc[-1]) if loc else ""
    if err.get("type") not in _TYPES or key not in EXPECTED:
        return None
    value = err.get("input")
    text = f"{EXPECTED[key]}, not {_shown(value)}"
    if EXPECTED[key] is LOCAL_TIME and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1440:
        # YAML 1.1 reads an unquoted 10:00 as the number 600 (base 60)
        text = f'{EXPECTED[key]} (quote it: "{value // 60:02d}:{value % 60:02d}"), not {value}'
    return text


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, default=str)[:60]
    except (TypeError, ValueError):
        return repr(value)[:60]
