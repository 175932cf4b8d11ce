"""Reading a channel plugin's settings (``HERALD_SETTINGS``) with plain refusals.

Each reader returns the setting's value (or its default when absent) or raises ``ValueError`` with
``<setting>: must be <what>, not <value>``: the engine reports it as ``plugins.<plugin>: <setting>: …``.
``where`` prefixes a nested block's settings (``google.`` for ``google: {cost: …}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

_MISSING = object()
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?")
_WHOLE = re.compile(r"[0-9]{1,15}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def refuse(key: str, what: str, value: Any, where: str = "") -> ValueError:
    """The error for a setting that is not ``what``."""
    return ValueError(f"{where}{key}: must be {what}, not {_shown(value)}")


def _get(settings: Mapping[str, Any], key: str) -> Any:
    value = settings.get(key, _MISSING)
    return _MISSING if value is None else value


def _numeral(value: Any, pattern: re.Pattern[str]) -> Any:
    """A plain numeral written as text (``$env:`` values are text: ``"0.02"``, ``"3"``) as its number;
    anything else unchanged (and refused by the caller unless it is already a number)."""
    if isinstance(value, str) and pattern.fullmatch(value.strip()):
        return float(value) if "." in value else int(value)
    return value


def number(settings: Mapping[str, Any], key: str, default: float, *, minimum: float = 0.0, where: str = "") -> float:
    """A number (integer or decimal, or such a numeral as text; not true/false) of at least ``minimum``."""
    value = _numeral(_get(settings, key), _DECIMAL)
    if value is _MISSING:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or not minimum <= value < float("inf"):
        raise refuse(key, f"a number ≥ {minimum:g}", value, where)
    return float(value)


def whole(settings: Mapping[str, Any], key: str, default: int, *, minimum: int = 1, where: str = "") -> int:
    """A whole number (or such a numeral as text) of at least ``minimum``."""
    value = _numeral(_get(settings, key), _WHOLE)
    if value is _MISSING:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise refuse(key, f"a whole number ≥ {minimum}", value, where)
    return value


def text(settings: Mapping[str, Any], key: str, default: str | None = None, *, where: str = "") -> str | None:
    """A non-empty text."""
    value = _get(settings, key)
    if value is _MISSING:
        return default
    if not isinstance(value, str) or not value.strip():
        raise refuse(key, "a non-empty text", value, where)
    return value


def texts(settings: Mapping[str, Any], key: str, default: tuple[str, ...] | None, *, where: str = "") -> tuple[str, ...] | None:
    """A list of non-empty texts."""
    value = _get(settings, key)
    if value is _MISSING:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise refuse(key, "a list of texts", value, where)
    return tuple(value)


def mapping(settings: Mapping[str, Any], key: str, *, of: str = "settings", where: str = "") -> Mapping[str, Any] | None:
    """A mapping (``of`` says of what, for the message); ``None`` when absent."""
    value = _get(settings, key)
    if value is _MISSING:
        return None
    if not isinstance(value, Mapping):
        raise refuse(key, f"a mapping of {of}", value, where)
    return value


def region(settings: Mapping[str, Any], key: str = "default_region") -> str | None:
    """A two-letter region code phone numbers can be read for (``IN``, ``US`` …), upper-cased."""
    value = _get(settings, key)
    if value is _MISSING:
        return None
    if not isinstance(value, str) or value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise refuse(key, "a two-letter region code such as IN or US", value)
    return value.upper()
