"""The field catalogue: every field a rule may test, with its type.

Built from the engine's own fields (``customer.id``, ``time.*``, ``message.*`` …), the contact fields and
fields plugins register (``register_contact_fields``, ``register_fields``), and the org's customer attributes
(``rules/fields.yaml``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.contracts import ContactField, FieldSpec
from engine.errors import Problem, RuleFileError, ValidationFailed
from engine.sourcefile import read_source

FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "datetime", "list")

BUILTIN_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("customer.id", "string", "the customer's external id"),
    FieldSpec("customer.timezone", "string", "IANA time zone"),
    FieldSpec("customer.language", "string", "preferred language (BCP 47)"),
    FieldSpec("customer.dnd", "boolean", "on the do-not-disturb registry"),
    FieldSpec("customer.blocked", "boolean", "blocked or flagged for fraud"),
    FieldSpec("customer.subscription.*", "string", "per-channel status: valid, subscribed, unable_to_verify, "
              "soft_bounced, hard_bounced, contact_unavailable, unsubscribed or invalid"),
    FieldSpec("time.local_hour", "integer", "hour 0–23 in the customer's time zone at the planned send time"),
    FieldSpec("time.local_minute", "integer", "minute 0–59 in the customer's time zone"),
    FieldSpec("time.weekday", "string", "mon, tue, wed, thu, fri, sat or sun, in the customer's time zone"),
    FieldSpec("time.date", "date", "the customer's local date"),
    FieldSpec("message.id", "string", "the message's id"),
    FieldSpec("message.type", "string", "broadcast, bounceback or timeline"),
    FieldSpec("message.campaign", "string", "the campaign's id"),
    FieldSpec("message.objective", "string", "the campaign's objective tag"),
)


class FieldCatalogue:
    """Looks up field specs by path; ``*`` in a declared path matches one segment.

    ``contacts`` are the registered contact fields by attribute name (what the audience readers normalise;
    each is also a ``customer.<name>`` string field)."""

    def __init__(self, specs: Iterable[FieldSpec], contacts: Iterable[ContactField] = ()):
        self.contacts: Mapping[str, ContactField] = MappingProxyType({c.name: c for c in contacts})
        self._exact: dict[str, FieldSpec] = {}
        self._wild: list[FieldSpec] = []
        for spec in specs:
            if spec.type not in FIELD_TYPES:
                raise ValueError(f"field {spec.path}: unknown type {spec.type!r}")
            if "*" in spec.path:
                self._wild.append(spec)
            else:
                self._exact[spec.path] = spec

    @property
    def regions(self) -> Mapping[str, str]:
        """Phone-like contact attribute → the region its numbers without ``+`` are read in (where one is set)."""
        return {name: c.region for name, c in self.contacts.items() if c.region}

    def lookup(self, path: str) -> FieldSpec | None:
        """The spec of ``path``, or ``None`` when the catalogue does not know it."""
        spec = self._exact.get(path)
        if spec is not None:
            return spec
        for w in self._wild:
            prefix = w.path[: w.path.index("*")]
            if path.startswith(prefix) and "." not in path[len(prefix) :] and len(path) > len(prefix):
                return w
        return None

    def suggest(self, path: str) -> str | None:
        """The closest known path, for 'did you mean' hints."""
        close = difflib.get_close_matches(path, list(self._exact), n=1, cutoff=0.75)
        return close[0] if close else None

    def __iter__(self):
        yield from self._exact.values()
        yield from self._wild

    def customer_types(self) -> dict[str, str]:
        """Attribute name (without ``customer.``) → type, for the audience readers."""
        return {s.path[9:]: s.type for s in self._exact.values() if s.path.startswith("customer.")}


def load_org_fields(path: str | Path) -> list[FieldSpec]:
    """Read an org's customer attribute catalogue (``customer: {name: {type, description}}``)."""
    p = Path(path)
    try:
        data = read_source(p).data or {}
    except ValidationFailed as exc:
        raise RuleFileError(exc.problems, str(exc).split("\n", 1)[0]) from None
    problems: list[Problem] = []
    specs: list[FieldSpec] = []
    section: Mapping[str, Any] = data.get("customer", {}) if isinstance(data, dict) else {}
    for name, spec in section.items():
        ftype = spec.get("type") if isinstance(spec, dict) else spec
        if ftype not in FIELD_TYPES:
            problems.append(Problem(f"type must be one of {', '.join(FIELD_TYPES)}", "field_type", str(p),
                                    path=f"customer.{name}.type"))
            continue
        desc = spec.get("description", "") if isinstance(spec, dict) else ""
        values = spec.get("values", []) if isinstance(spec, dict) else []
        try:
            allowed = tuple(coerce(ftype, v) for v in values) if isinstance(values, list) else None
        except ValueError:
            allowed = None
        if allowed is None or None in allowed:
            problems.append(Problem(f"values is a list of {ftype} values", "field_values", str(p),
                                    path=f"customer.{name}.values"))
            continue
        specs.append(FieldSpec(f"customer.{name}", ftype, desc, allowed))
    if problems:
        raise RuleFileError(problems, f"{p}: invalid field catalogue")
    return specs


def build_catalogue(plugin_fields: Iterable[FieldSpec] = (), org_fields: Iterable[FieldSpec] = (),
                    contacts: Iterable[ContactField] = ()) -> FieldCatalogue:
    """Built-in fields, then contact fields (``customer.<name>``, strings), then plugin fields, then org fields
    (a later one may not give an earlier one another type; a contact field may not be a built-in one).
    ``contacts``: the registry's (``registry.contacts.values()``)."""
    contacts = tuple(contacts)
    seen: dict[str, FieldSpec] = {s.path: s for s in BUILTIN_FIELDS}
    for c in contacts:
        if f"customer.{c.name}" in seen:
            raise ValueError(f"contact field {c.name}: customer.{c.name} is one of the engine's own fields")
    contact_specs = [FieldSpec(f"customer.{c.name}", "string", c.description) for c in contacts]
    for spec in (*contact_specs, *plugin_fields, *org_fields):
        prior = seen.get(spec.path)
        if prior is not None and prior.type != spec.type:
            raise ValueError(f"field {spec.path} declared as {prior.type} and as {spec.type}")
        seen[spec.path] = spec
    return FieldCatalogue(seen.values(), contacts)


#: The text forms of numbers (ASCII digits only: no ``1_000``, no ``٣``, no ``inf``/``nan``), shared with the
#: columnar reader so that both accept exactly the same cells.
INTEGER_TEXT = r"^[+-]?[0-9]+$"
NUMBER_TEXT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
INT64 = (-(2**63), 2**63 - 1)
EXACT_FLOAT = 2**53  # whole numbers a ``number`` (64-bit float) holds exactly
_INTEGER_RE = re.compile(INTEGER_TEXT)
_NUMBER_RE = re.compile(NUMBER_TEXT)
_DATE_RE = re.compile(DATE_TEXT)


def coerce(ftype: str, value: Any) -> Any:
    """Normalise ``value`` to the engine's form of ``ftype``; ``ValueError`` says what was expected.

    Dates become ISO ``YYYY-MM-DD`` strings and datetimes ISO strings in UTC, so that every evaluator
    compares them the same way; CSV text is parsed (``true``/``false``, numbers, ``a|b`` lists). Numbers
    are finite, integers within 64 bits, and number text is ASCII digits (``1_000``, ``٣``, ``inf`` are
    refused); lists hold strings only (no nulls).
    """
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    if ftype == "string":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    if ftype in ("integer", "number"):
        return _number(ftype, value)
    if ftype == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
            return _BOOL_TEXT[value.strip().lower()]
        raise ValueError(f"expected true or false, got {value!r}")
    if ftype == "date":
        return _date(value)
    if ftype == "datetime":
        return _datetime(value)
    if ftype == "list":
        if isinstance(value, str):
            return [p.strip() for p in value.split("|") if p.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(f"expected a list of strings, got {value!r}")
    raise ValueError(f"unknown field type {ftype!r}")


def _number(ftype: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_RE.match(text):
            value = int(text)
        elif _NUMBER_RE.match(text):
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(f"{text!r} is too large for a number")
        else:
            plain = " written with the digits 0-9 only" if any(c.isdigit() for c in text) else ""
            raise ValueError(f"expected a number{plain}, got {text!r}")
    if isinstance(value, float) and ftype == "integer":
        if not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        if not INT64[0] <= value < 2.0**63:
            raise ValueError(f"{value!r} is outside the 64-bit integer range")
        value = int(value)
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise ValueError(f"{value} is outside the 64-bit integer range")
    if isinstance(value, int) and ftype == "number" and abs(value) > EXACT_FLOAT:
        raise ValueError(f"{value} has more digits than a number keeps (at most ±2^53 exactly)")
    return value


def _date(value: Any) -> str:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and _DATE_RE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


def _datetime(value: Any) -> str:
    import datetime as dt

    if isinstance(value, str):
        try:
            if not value.isascii():
                raise ValueError
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected an ISO 8601 date-time, got {value!r}") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    raise ValueError(f"expected an ISO 8601 date-time, got {value!r}")


_BOOL_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False, "y": True, "n": False}
