"""Audience files (CSV or JSONL) → Customers, typed by the field catalogue; bad rows reported by line.

CSV: UTF-8 (a BOM is tolerated), a header row, an ``id`` column; other columns are attributes named by
their path without ``customer.`` (``tier``, ``subscription.sms``); empty cells are missing values; lists
are ``a|b``. JSONL: one object per line with ``id``; nested objects become dotted attributes.
Reading is all-or-nothing unless ``keep_valid`` is set, in which case bad rows are skipped and reported.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from engine.errors import AudienceError, Problem
from engine.facts import zone
from engine.fields import FieldCatalogue, coerce
from engine.model import Customer

MAX_REPORTED = 50


def normalise_phone(text: str) -> str:
    """E.164 form of an international number (``+`` and country code required); ``ValueError`` otherwise."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number in international form: {text!r} ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {text!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(text: str) -> str:
    """The normalised address (syntax checked, no DNS look-up); ``ValueError`` otherwise."""
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


#: Contact attributes checked and normalised on the way in.
CHECKERS = {"phone": normalise_phone, "whatsapp": normalise_phone, "email": normalise_email}


@dataclass
class AudienceRead:
    """The customers read and the rows rejected."""

    customers: list[Customer]
    rejected: list[Problem] = field(default_factory=list)


def read_audience(path: str | Path, catalogue: FieldCatalogue, *, keep_valid: bool = False) -> AudienceRead:
    """Read a whole audience file; raises ``AudienceError`` on any bad row unless ``keep_valid``."""
    customers: list[Customer] = []
    rejected: list[Problem] = []
    for item in iter_rows(path, catalogue):
        if isinstance(item, Problem):
            rejected.append(item)
        else:
            customers.append(item)
    if rejected and not keep_valid:
        shown = rejected[:MAX_REPORTED]
        more = f" (first {MAX_REPORTED} shown)" if len(rejected) > MAX_REPORTED else ""
        raise AudienceError(shown, f"{path}: {len(rejected)} bad row(s){more}; nothing was evaluated")
    return AudienceRead(customers, rejected)


def iter_rows(path: str | Path, catalogue: FieldCatalogue) -> Iterator[Customer | Problem]:
    """Yield a Customer per good row and a Problem (with its line) per bad row."""
    p = Path(path)
    types = catalogue.customer_types()
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        yield from _jsonl(p, types)
    elif p.suffix.lower() == ".csv":
        yield from _csv(p, types)
    else:
        raise AudienceError([Problem("audience files are .csv or .jsonl", "format", str(p))])


def make_customer(raw: Mapping[str, Any], types: Mapping[str, str], file: str, line: int) -> Customer | Problem:
    """Type-check one row's attributes; the first bad value becomes a Problem naming the column."""
    cid = raw.get("id")
    if cid is None or (isinstance(cid, str) and not cid.strip()):
        return Problem("the id is missing", "missing_id", file, line, path="id")
    attrs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "id" or value is None or value == "":
            continue
        name = key.removeprefix("customer.")
        ftype = types.get(name) or ("string" if name.startswith("subscription.") else None)
        if ftype is not None:
            try:
                value = coerce(ftype, value)
            except ValueError as exc:
                return Problem(f"{name}: {exc}", "type", file, line, path=name)
        if name == "timezone" and zone(value) is None:
            return Problem(f"timezone: unknown IANA time zone {value!r}", "timezone", file, line, path=name)
        if name in CHECKERS:
            try:
                value = CHECKERS[name](str(value))
            except ValueError as exc:
                return Problem(f"{name}: {exc}", name, file, line, path=name)
        attrs[name] = value
    return Customer(str(cid).strip(), attrs)


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


def _csv(p: Path, types: Mapping[str, str]) -> Iterator[Customer | Problem]:
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
        while True:
            start = line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Problem(f"malformed CSV: {exc}", "csv", str(p), start)
                return
            except UnicodeDecodeError as exc:
                yield Problem(f"not UTF-8 text: {exc.reason}", "encoding", str(p), start)
                return
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield Problem(f"expected {len(header)} columns, found {len(row)}", "columns", str(p), start)
                continue
            yield make_customer(dict(zip(header, row, strict=True)), types, str(p), start)


def _jsonl(p: Path, types: Mapping[str, str]) -> Iterator[Customer | Problem]:
    check_utf8(p)
    fh = p.open(encoding="utf-8-sig")
    with fh:
        for n, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Problem(f"invalid JSON: {exc.msg}", "json", str(p), n, exc.colno)
                continue
            if not isinstance(obj, dict):
                yield Problem("each line must be a JSON object", "json", str(p), n)
                continue
            yield make_customer(_flat(obj), types, str(p), n)


def _flat(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
