"""Audience files (CSV or JSONL) → Customers, typed by the field catalogue; bad rows reported by line.

CSV: UTF-8 (a BOM is tolerated), a header row, an ``id`` column; other columns are attributes named by
their path without ``customer.`` (``tier``, ``subscription.sms``); empty cells are missing values; lists
are ``a|b``. JSONL: one object per line with ``id``; nested objects become dotted attributes.
Reading is all-or-nothing unless ``keep_valid`` is set, in which case bad rows are skipped and reported.

Customer ids are unique: a repeated id is a bad row (``id 'c42' also on line 3``; with ``keep_valid`` the
first occurrence is kept), unless ``merge_duplicates`` is set: then the rows of one id become one customer,
at the first row's place, each later row's non-empty values replacing the earlier ones (empty cells and
missing keys keep what an earlier row gave). ``subscription.<channel>`` values must be one of
``engine.model.SUBSCRIPTION_STATUSES``. The contact fields the plugins register (``catalogue.contacts``:
phone, WhatsApp number, e-mail address …) are normalised; a malformed one does not make the row bad: the
value is kept as read and ``handle_error.<attribute>`` holds the reason, so the channels using it answer
``invalid`` for that customer (``engine.reachability``). A valid one's type, when the field has one (a phone
number's line type), is recorded in ``handle_type.<attribute>``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

from engine.contracts import ContactField
from engine.errors import AudienceError, Problem
from engine.facts import zone
from engine.fields import INT64, FieldCatalogue, coerce
from engine.lazy import lazy
from engine.model import EMPTY, SUBSCRIPTION_STATUSES, Customer
from engine.reachability import HANDLE_ERROR, HANDLE_TYPE
from engine.sourcefile import MAX_DEPTH, too_deep

email_validator = lazy("email_validator")  # imported on first use (start-up)

MAX_REPORTED = 50
RESERVED = (f"the {HANDLE_ERROR}* and {HANDLE_TYPE}* attributes are Herald's own (why a handle is malformed, "
            "a phone number's line type); rename the column")
OWN = (HANDLE_ERROR, HANDLE_TYPE)
_PHONE_ERRORS = {
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    phonenumbers.NumberParseException.TOO_LONG: "is too long",
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "has no known country code after the +",
}


def normalise_phone(text: str, name: str = "phone", region: str | None = None) -> str:
    """E.164 form of a valid number; ``ValueError`` otherwise, in our own words. Without ``region`` the number
    must be in international form (``+`` and country code: ``phone '0812345678' is not in international form
    (+ and country code)``); with one (an ISO code such as ``GB``), a number without ``+`` is read as that
    region's national form."""
    if region is None and not text.strip().startswith("+"):
        raise ValueError(f"{name} {text!r} is not in international form (+ and country code)")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{name} {text!r} {_PHONE_ERRORS.get(exc.error_type, 'is not a phone number')}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{name} {text!r} is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_whatsapp(text: str, region: str | None = None) -> str:
    """:func:`normalise_phone` for the ``whatsapp`` attribute."""
    return normalise_phone(text, "whatsapp", region)


def normalise_email(text: str) -> str:
    """The normalised address (syntax checked, no DNS look-up); ``ValueError`` otherwise, in our words."""
    try:
        return email_validator.validate_email(text, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        raise ValueError(email_error(text)) from None


def email_error(text: str) -> str:
    """The message of an address email-validator refuses (what :func:`normalise_email` raises)."""
    return f"email {text!r} is not a valid address: {_email_fault(text)}"


def _email_fault(text: str) -> str:
    local, at, domain = text.partition("@")
    if not at:
        return "it has no @"
    if "@" in domain:
        return "it has more than one @"
    if any(c.isspace() for c in text):
        return "it contains a space"
    if not local:
        return "nothing before the @"
    if not domain:
        return "nothing after the @"
    if "." not in domain:
        return f"the domain {domain!r} has no dot"
    return "the rule is name@domain.tld, letters, digits and . _ + - before the @, a domain name after it"


def normalised_handle(contact: ContactField, value: str) -> tuple[str | None, str | None]:
    """(the normalised handle, None), or (None, why it is malformed) for a value of a contact field."""
    try:
        return contact.check(value), None
    except ValueError as exc:
        return None, str(exc) or f"{contact.name} {value!r} is malformed"


def check_handle(contact: ContactField, value: str) -> tuple[dict[str, Any], str | None]:
    """(attributes to set, error) for a value of a registered contact field: the normalised value (and its
    ``handle_type``, a phone number's line type), or the value as read and why it is malformed."""
    name = contact.name
    handle, error = normalised_handle(contact, value)
    if handle is None:
        return {name: value}, error
    if contact.handle_type is None:
        return {name: handle}, None
    return {name: handle, HANDLE_TYPE + name: contact.handle_type(handle)}, None


@dataclass
class AudienceRead:
    """The customers read and the rows rejected."""

    customers: list[Customer]
    rejected: list[Problem] = field(default_factory=list)


def read_audience(path: str | Path, catalogue: FieldCatalogue, *, keep_valid: bool = False,
                  merge_duplicates: bool = False) -> AudienceRead:
    """Read a whole audience file; raises ``AudienceError`` on any bad row (a repeated id included, unless
    ``merge_duplicates``) unless ``keep_valid``."""
    customers: dict[str, Customer] = {}
    first_line: dict[str, int] = {}
    rejected: list[Problem] = []
    kinds = FreeKinds(catalogue.customer_types())
    for line, item in numbered_rows(path, catalogue):
        if isinstance(item, Customer):
            item = kinds.check(item, str(path), line)
        if isinstance(item, Problem):
            rejected.append(item)
        elif item.id not in customers:
            customers[item.id], first_line[item.id] = item, line
        elif merge_duplicates:
            customers[item.id] = merge_customers(customers[item.id], item)
        else:
            rejected.append(duplicate_problem(item.id, str(path), line, first_line[item.id]))
    if rejected and not keep_valid:
        raise_bad_rows(rejected, str(path))
    return AudienceRead(list(customers.values()), rejected)


class FreeKinds:
    """The kind of each free attribute (one the catalogue does not type), fixed by its first good row:
    one attribute holds one kind of value in every row (text, number, true/false or list of strings), as a
    column must."""

    def __init__(self, types: Mapping[str, str]):
        self._types = types
        self._seen: dict[str, tuple[str, int]] = {}

    def check(self, customer: Customer, file: str, line: int) -> Customer | Problem:
        """``customer``, or the Problem of its first free attribute of another kind than before."""
        found = {}
        for name, value in customer.attributes.items():
            if name in self._types or name.startswith(("subscription.", *OWN)):
                continue
            kind = _kind(value)
            first = self._seen.get(name)
            if first is not None and first[0] != kind:
                return Problem(f"{value!r} is {kind}, but line {first[1]} has {first[0]}; an attribute holds one "
                               "kind of value", "type", file, line, path=name)
            found[name] = (kind, line)
        for name, seen in found.items():
            self._seen.setdefault(name, seen)
        return customer


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, list) else "text"


def raise_bad_rows(rejected: list[Problem], file: str) -> None:
    """Raise the ``AudienceError`` of an all-or-nothing read: the first ``MAX_REPORTED`` bad rows."""
    shown = rejected[:MAX_REPORTED]
    more = f" (first {MAX_REPORTED} shown)" if len(rejected) > MAX_REPORTED else ""
    raise AudienceError(shown, f"{file}: {len(rejected)} bad row(s){more}; nothing was evaluated")


def duplicate_problem(cid: str, file: str, line: int, first: int) -> Problem:
    """The bad row of a repeated id: ``a.csv:14: id 'c42' also on line 3``."""
    return Problem(f"id {cid!r} also on line {first}", "duplicate_id", file, line)


def merge_customers(earlier: Customer, later: Customer) -> Customer:
    """One customer from two rows of the same id: the later row's values win (a missing value keeps the
    earlier one); a contact handle carries its own ``handle_error`` and ``handle_type`` marks along."""
    attrs = dict(earlier.attributes)
    for key in later.attributes:
        if not key.startswith(OWN):
            attrs.pop(HANDLE_ERROR + key, None)
            attrs.pop(HANDLE_TYPE + key, None)
    attrs.update(later.attributes)
    return Customer(earlier.id, attrs)


def iter_rows(path: str | Path, catalogue: FieldCatalogue) -> Iterator[Customer | Problem]:
    """Yield a Customer per good row and a Problem (with its line) per bad row (ids are not compared)."""
    for _, item in numbered_rows(path, catalogue):
        yield item


def numbered_rows(path: str | Path, catalogue: FieldCatalogue) -> Iterator[tuple[int, Customer | Problem]]:
    """(line, Customer) per good row and (line, Problem) per bad row."""
    p = Path(path)
    types, contacts = catalogue.customer_types(), catalogue.contacts
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        yield from _jsonl(p, types, contacts)
    elif p.suffix.lower() == ".csv":
        yield from _csv(p, types, contacts)
    else:
        raise AudienceError([Problem("audience files are .csv or .jsonl", "format", str(p))])


def make_customer(raw: Mapping[str, Any], types: Mapping[str, str], file: str, line: int,
                  contacts: Mapping[str, ContactField] = EMPTY) -> Customer | Problem:
    """Type-check one row's attributes; the first bad value becomes a Problem naming the column.
    ``contacts``: the contact fields to normalise (``catalogue.contacts``), by attribute name. (Reading many
    rows, keep one :class:`CustomerReader`: it works out each attribute's checks once.)"""
    return CustomerReader(types, contacts).make(raw, file, line)


#: the most attribute names a :class:`CustomerReader` keeps the checks of (the catalogue's, then the first seen)
_PLANS_MAX = 4096


class CustomerReader:
    """:func:`make_customer` for one catalogue's ``types`` and ``contacts``, each attribute name's checks (its
    type's coercion, the reserved prefixes, time zone, subscription status, contact field) worked out once."""

    def __init__(self, types: Mapping[str, str], contacts: Mapping[str, ContactField] = EMPTY):
        self.types, self.contacts = types, contacts
        self._plans: dict[str, _Plan] = {}

    def _plan(self, name: str) -> _Plan:
        plan = self._plans.get(name)
        if plan is None:
            subscription = name.startswith("subscription.")
            ftype = self.types.get(name) or ("string" if subscription else None)
            plan = (name.startswith(OWN), ftype, _COERCERS.get(ftype, _coerce_as(ftype)) if ftype else None,
                    name == "timezone", subscription, self.contacts.get(name))
            if len(self._plans) < _PLANS_MAX:
                self._plans[name] = plan
        return plan

    def make(self, raw: Mapping[str, Any], file: str, line: int) -> Customer | Problem:
        """See :func:`make_customer`."""
        cid = raw.get("id")
        if cid is None or (isinstance(cid, str) and not cid.strip()):
            return Problem("the id is missing", "missing_id", file, line, path="id")
        if (bad := id_kind_error(cid)) is not None:
            return Problem(bad, "id_type", file, line, path="id")
        attrs: dict[str, Any] = {}
        plans = self._plans
        for key, value in raw.items():
            if key == "id" or value is None or value == "":
                continue
            name = key.removeprefix("customer.")
            plan = plans.get(name) or self._plan(name)
            reserved, ftype, convert, timezone, subscription, contact = plan
            if reserved:
                return Problem(RESERVED, "reserved", file, line, path=name)
            if convert is not None:
                try:
                    value = convert(value)
                except ValueError as exc:
                    return Problem(str(exc), "type", file, line, path=name)
            elif (kind := type(value)) is str:
                pass
            elif kind is not bool and isinstance(value, float | int):
                try:
                    coerce("number", value)  # free attributes too: finite, integers within 64 bits
                except ValueError as exc:
                    return Problem(str(exc), "type", file, line, path=name)
            elif isinstance(value, list) and not all(isinstance(v, str) for v in value):
                return Problem(f"lists hold strings only, got {value!r}", "type", file, line, path=name)
            if timezone and (not isinstance(value, str) or zone(value) is None):
                return Problem(f"unknown IANA time zone {value!r}", "timezone", file, line, path=name)
            if subscription and value not in SUBSCRIPTION_STATUSES:
                return Problem(status_error(value), "status", file, line, path=name)
            if contact is not None:
                checked, error = check_handle(contact, str(value))
                attrs.update(checked)
                if error is not None:
                    attrs[HANDLE_ERROR + name] = error
                continue
            attrs[name] = value
        return Customer(str(cid).strip(), attrs)


#: an attribute's checks: (reserved name, catalogue type, its coercion, the time zone, a subscription status,
#: the contact field)
_Plan = tuple[bool, "str | None", "Callable[[Any], Any] | None", bool, bool, "ContactField | None"]


def _coerce_as(ftype: str) -> Callable[[Any], Any]:
    return lambda value: coerce(ftype, value)


def _as_string(value: Any) -> Any:
    return value if type(value) is str else coerce("string", value)


def _as_number(value: Any) -> Any:
    return value if type(value) is float and math.isfinite(value) else coerce("number", value)


def _as_integer(value: Any) -> Any:
    return value if type(value) is int and INT64[0] <= value <= INT64[1] else coerce("integer", value)


def _as_boolean(value: Any) -> Any:
    return value if type(value) is bool else coerce("boolean", value)


def _as_list(value: Any) -> Any:
    if type(value) is list and all(type(v) is str for v in value):
        return list(value)
    return coerce("list", value)


#: :func:`engine.fields.coerce` per type, answering the values JSON gives without its chain of tests
_COERCERS: dict[str | None, Callable[[Any], Any]] = {
    "string": _as_string, "number": _as_number, "integer": _as_integer, "boolean": _as_boolean, "list": _as_list}


def id_kind_error(value: Any) -> str | None:
    """Why a JSON value cannot be a customer id (only text and whole numbers can), or ``None``."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    kind = ("true/false" if isinstance(value, bool) else "an object" if isinstance(value, Mapping)
            else "a list" if isinstance(value, list) else "a fraction" if isinstance(value, float)
            and not value.is_integer() else "a decimal number" if isinstance(value, float) else type(value).__name__)
    return f"an id is text or a whole number, not {kind} ({json.dumps(value)[:40]})"


def status_error(value: Any) -> str:
    """The message of a ``subscription.<channel>`` value outside the closed set."""
    return f"unknown status {value!r}; the statuses are {', '.join(SUBSCRIPTION_STATUSES)}"


def check_utf8(p: Path) -> None:
    """Raise ``AudienceError`` naming the line of the first byte that is not UTF-8 (files are read in chunks)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    try:
        fh = p.open("rb")
    except FileNotFoundError:
        raise AudienceError([Problem("file not found", "not_found", str(p))]) from None
    with fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                raise AudienceError([Problem(f"not UTF-8 text (byte {offset + exc.start}); save the file as UTF-8",
                                             "encoding", str(p), line)]) from None
            line += chunk.count(b"\n")
            offset += len(chunk)


def _csv(p: Path, types: Mapping[str, str], contacts: Mapping[str, ContactField]) -> Iterator[tuple[int, Customer | Problem]]:
    check_utf8(p)
    fh = p.open(encoding="utf-8-sig", newline="")
    with fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise AudienceError([Problem("empty file: a header row is required", "empty", str(p), 1)]) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise AudienceError([Problem(f"unreadable header: {exc}", "csv", str(p), 1)]) from None
        header = [h.strip() for h in header]
        if "id" not in header and "customer.id" not in header:
            raise AudienceError([Problem(f"no id column; columns are {', '.join(header)}", "missing_id_column", str(p), 1)])
        header = ["id" if h == "customer.id" else h for h in header]
        dupes = {h for h in header if header.count(h) > 1}
        if dupes:
            raise AudienceError([Problem(f"duplicate columns: {', '.join(sorted(dupes))}", "duplicate_column", str(p), 1)])
        line = reader.line_num
        customers = CustomerReader(types, contacts)
        while True:
            start = line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, Problem(f"malformed CSV: {exc}", "csv", str(p), start)
                return
            except UnicodeDecodeError as exc:
                yield start, Problem(f"not UTF-8 text: {exc.reason}", "encoding", str(p), start)
                return
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield start, Problem(f"expected {len(header)} columns, found {len(row)}", "columns", str(p), start)
                continue
            yield start, customers.make(dict(zip(header, row, strict=True)), str(p), start)


def _jsonl(p: Path, types: Mapping[str, str], contacts: Mapping[str, ContactField]) -> Iterator[tuple[int, Customer | Problem]]:
    check_utf8(p)
    fh = p.open(encoding="utf-8-sig")
    customers = CustomerReader(types, contacts)
    with fh:
        for n, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            deep = too_deep(text)
            if deep is not None:
                yield n, Problem(f"nested deeper than the limit of {MAX_DEPTH} levels", "too_deep", str(p), n, deep[1])
                continue
            try:
                obj = json.loads(text, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                yield n, Problem(f"invalid JSON: {exc.msg}", "json", str(p), n, exc.colno)
                continue
            except ValueError as exc:
                yield n, Problem(f"invalid JSON: {exc}", "json", str(p), n)
                continue
            if not isinstance(obj, dict):
                yield n, Problem("each line must be a JSON object", "json", str(p), n)
                continue
            bad = next((e for k in ("id", "customer.id") if k in obj and (e := id_kind_error(obj[k]))), None)
            if bad is not None:  # checked before flattening: an object id would become id.<key> attributes
                yield n, Problem(bad, "id_type", str(p), n, path="id")
                continue
            yield n, customers.make(flatten(obj), str(p), n)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``{"subscription": {"sms": x}}`` → ``subscription.sms``)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if type(v) not in _PLAIN and isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_PLAIN = frozenset({str, int, float, bool, list, type(None)})  # JSON's values that are no mapping (a fast test)
