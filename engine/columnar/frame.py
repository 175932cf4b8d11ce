"""Audiences as columns: CSV, JSONL and Parquet read with polars into one frame (``customer.*`` columns),
typed by the field catalogue and checked like ``engine.audience`` — without a Python object per customer.

Values are converted column by column; values polars cannot convert the way ``engine.fields.coerce``
does are converted by ``coerce`` itself, once per distinct value, so the results are the same. When a
CSV or JSONL file has any bad row (or polars cannot parse it), the file is read again with the per-row
reader of ``engine.audience``, which reports every bad row with its line number; Parquet rows are
reported with their row number (1 = the first row) as the line.

The rules are those of ``engine.audience``: repeated ids are bad rows unless ``merge_duplicates`` (then
merged the same way, vectorised), ``subscription.<channel>`` values are a closed set, and a malformed
value of a registered contact field (``catalogue.contacts``: phone, WhatsApp number, e-mail address …) is kept
as read with its reason in ``customer.handle_error.<name>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from engine.audience import (
    OWN,
    RESERVED,
    duplicate_problem,
    raise_bad_rows,
    read_audience,
    status_error,
)
from engine.columnar.contacts import check_contact, per_unique
from engine.contracts import ContactField
from engine.errors import AudienceError, Problem
from engine.facts import zone
from engine.fields import DATE_TEXT, EXACT_FLOAT, INTEGER_TEXT, NUMBER_TEXT, FieldCatalogue, coerce
from engine.model import SUBSCRIPTION_STATUSES, Customer
from engine.reachability import HANDLE_ERROR, HANDLE_TYPE
from engine.sourcefile import MAX_DEPTH

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

ID = "customer.id"
_DTYPES: dict[str, PolarsDataType] = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64,
                                   "boolean": pl.Boolean, "date": pl.String, "datetime": pl.String,
                                   "list": pl.List(pl.String)}
_WIDE = (pl.Int128, pl.UInt64)
_PY_ONLY_SPACE = "[\x1c-\x1f]"  # white space to Python's str.strip, not to Rust's
_BOOL = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False, "y": True, "n": False}


@dataclass
class FrameRead:
    """The audience frame and the rows rejected."""

    frame: pl.DataFrame
    rejected: list[Problem] = field(default_factory=list)


class _Bad(Exception):
    """The fast path found a bad row; the caller reports rows the exact per-row way."""


def read_frame(path: str | Path, catalogue: FieldCatalogue, *, keep_valid: bool = False,
               channels: Iterable[str] = (), merge_duplicates: bool = False) -> FrameRead:
    """Read an audience file (.csv, .jsonl/.ndjson, .parquet) as a frame; ``AudienceError`` on bad rows
    (repeated ids included unless ``merge_duplicates``) unless ``keep_valid``. ``channels``: their
    ``customer.subscription.<name>`` columns are always present."""
    p = Path(path)
    types = catalogue.customer_types()
    suffix = p.suffix.lower()
    if not p.exists():
        raise AudienceError([Problem("file not found", "not_found", str(p))])
    try:
        if suffix == ".parquet":
            frame, problems = _typed(_flatten(pl.read_parquet(p)), types, str(p), rows_are_lines=True,
                                     contacts=catalogue.contacts)
            if not merge_duplicates:
                problems = _with_duplicates(frame.get_column(ID), problems, str(p))
            if problems:
                frame = _drop_rows(frame, problems, keep_valid, str(p))
        elif suffix in (".csv", ".jsonl", ".ndjson"):
            raw = _read_csv(p) if suffix == ".csv" else _read_jsonl(p, types)
            frame, problems = _typed(raw, types, str(p), rows_are_lines=False, contacts=catalogue.contacts)
            if not merge_duplicates and has_repeats(frame.get_column(ID)):
                raise _Bad("repeated ids")
        else:
            raise AudienceError([Problem("audience files are .csv, .jsonl or .parquet", "format", str(p))])
        if merge_duplicates:
            frame = merge_rows(frame)
    except (_Bad, pl.exceptions.PolarsError, UnicodeDecodeError):
        read = read_audience(p, catalogue, keep_valid=keep_valid, merge_duplicates=merge_duplicates)
        frame, problems = frame_from_customers(read.customers, types), read.rejected
    return FrameRead(complete(frame, types, channels), problems)


def has_repeats(ids: pl.Series) -> bool:
    """Whether a value occurs twice (nulls count as equal). Distinct 64-bit hashes prove the values distinct
    (a hash look-up of integers, several times cheaper than one of strings); only on a repeated hash are
    the values themselves compared."""
    if ids.hash().n_unique() == ids.len():
        return False
    return bool(ids.is_duplicated().any())


def _drop_rows(frame: pl.DataFrame, problems: list[Problem], keep_valid: bool, file: str) -> pl.DataFrame:
    if not keep_valid:
        raise_bad_rows(problems, file)
    bad = [p.line - 1 for p in problems if p.line is not None]
    return frame.with_row_index("_row").filter(~pl.col("_row").is_in(bad)).drop("_row")


def _with_duplicates(ids: pl.Series, problems: list[Problem], file: str) -> list[Problem]:
    """``problems`` and a ``duplicate_id`` problem per repeated id among the rows without one (rows are
    lines, 1 = the first row), sorted by line; Python work only for the repeated rows."""
    if not has_repeats(ids):
        return problems
    bad = [p.line - 1 for p in problems if p.line is not None]
    rows = (pl.DataFrame({"id": ids}).with_row_index("_row").filter(~pl.col("_row").is_in(bad))
            .with_columns(pl.col("_row").first().over("id").alias("_first"))
            .filter(pl.col("_row") != pl.col("_first")))
    dupes = [duplicate_problem(cid, file, row + 1, first + 1) for row, cid, first in rows.iter_rows()]
    return sorted([*problems, *dupes], key=lambda p: p.line or 0)


def merge_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per ``customer.id``, at its first row's place: each column's last non-null value (a contact's
    ``handle_error`` mark comes from the row its handle comes from), as ``engine.audience.merge_customers``."""
    if not has_repeats(frame.get_column(ID)):
        return frame
    marks = {c: f"customer.{c.removeprefix('customer.').removeprefix(own)}" for c in frame.columns
             for own in OWN if c.startswith(f"customer.{own}")}

    def last(name: str) -> pl.Expr:
        handle = marks.get(name)
        if handle is not None and handle in frame.columns:
            return pl.col(name).filter(pl.col(handle).is_not_null()).last()
        return pl.col(name).drop_nulls().last()

    return frame.group_by(ID, maintain_order=True).agg([last(c) for c in frame.columns if c != ID])


def _read_csv(p: Path) -> pl.DataFrame:
    with p.open("rb") as fh:
        head = fh.readline().decode("utf-8-sig")
    if '"' in head:
        raise _Bad("quoted header")
    header = [h.strip() for h in head.rstrip("\r\n").split(",")]
    if "id" not in header and "customer.id" not in header or len(set(header)) != len(header):
        raise _Bad("header")
    df = pl.read_csv(p, infer_schema=False, has_header=True, encoding="utf8", quote_char='"',
                     truncate_ragged_lines=False)
    df.columns = ["id" if h == "customer.id" else h for h in header]
    blank = pl.all_horizontal([pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in df.columns])
    df = df.filter(~blank)
    if _ragged(p, len(header)):
        raise _Bad("ragged")
    return df


def _read_jsonl(p: Path, types: Mapping[str, str]) -> pl.DataFrame:
    """The flattened JSONL frame, unless polars had to blur the JSON types (``_Bad``: the per-row reader
    then decides): polars reads a column holding strings and other values as all strings (``1`` and
    ``"1"`` alike), a list holding numbers as strings, and ``1`` as ``1.0`` in a column that also holds
    ``1.5``; the row reader sees the JSON values themselves."""
    if _nested_deeper_than_allowed(p):
        raise _Bad("a value nested deeper than the limit")
    df = _flatten(pl.read_ndjson(p, infer_schema_length=None))
    ids = df.schema.get("id", df.schema.get("customer.id"))
    if ids is not None and ids not in (pl.String, pl.Int64, pl.Null):
        raise _Bad("ids that are not strings or integers")
    texts = [n for n, t in df.schema.items() if t == pl.String]
    lists = [n for n, t in df.schema.items() if t == pl.List(pl.String)]
    if any(t.is_float() and _ftype(n, types) == "string" or t in _WIDE
           or isinstance(t, pl.List) and t != pl.List(pl.String) for n, t in df.schema.items()):
        raise _Bad("numbers in a text attribute, integers beyond 64 bits, or lists of other things than strings")
    if not texts and not lists:
        return df
    item = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # a JSON string (unrolled: fast)
    patterns = [r'"[^"\\]*(?:\\.[^"\\]*)+"\s*:']  # a key written with escapes: its name is uncertain
    if texts:
        patterns.append(_keys(texts) + r'\s*:\s*[^"\sn]')  # a non-string value where strings are
    if lists:
        patterns.append(_keys(lists) + r"\s*:\s*\[\s*(?:" + item + r"\s*,\s*)*[^\"\s\]]")  # a non-string item
    text = pl.Series([p.read_bytes().decode("utf-8-sig")])
    if any(text.str.contains(x).any() for x in patterns):  # one scan each: faster than one alternation
        raise _Bad("mixed JSON types in a column")
    return df


def _nested_deeper_than_allowed(p: Path) -> bool:
    """Whether some line holds more brackets than ``MAX_DEPTH`` (then the per-row reader, which measures the
    real nesting, decides: polars' reader and its Python conversion recurse as deep as the data nests)."""
    lines = pl.Series([p.read_bytes().decode("utf-8-sig")]).str.split("\n").explode()
    return bool((lines.str.count_matches(r"[\[{]") > MAX_DEPTH).any())


def _keys(names: list[str]) -> str:
    """A regex matching the JSON key of any of ``names`` (the dotted name, or its last part when nested)."""
    keys = {k for n in names for k in (n, n.removeprefix("customer.").rsplit(".", 1)[-1])}
    return '"(?:' + "|".join("".join(c if c.isalnum() or c == "_" else f"\\x{{{ord(c):x}}}" for c in k)
                             for k in sorted(keys)) + ')"'


def _ftype(name: str, types: Mapping[str, str]) -> str | None:
    name = name.removeprefix("customer.")
    return types.get(name) or ("string" if name.startswith("subscription.") else None)


def _ragged(p: Path, width: int) -> bool:
    """Whether some non-blank record has another number of fields than the header. Quoted segments are
    removed first (they may hold commas); a quote left over (malformed CSV, or a quoted line break) sends
    the file to the per-row reader (``_Bad``)."""
    text = p.read_bytes().decode("utf-8-sig")
    lines = pl.Series([text]).str.split("\n").explode().slice(1).str.strip_suffix("\r")
    del text
    if lines.str.contains('"', literal=True).any():
        lines = lines.str.replace_all(r'"(?:[^"]|"")*"', "")
        if lines.str.contains('"', literal=True).any():
            raise _Bad("malformed quoting, or a quoted line break")
    odd = lines.filter(lines.str.count_matches(",", literal=True) != width - 1)
    return bool(odd.str.contains(r"[^,\s]").any())  # blank lines (only commas and spaces) are skipped


def _flatten(df: pl.DataFrame, prefix: str = "") -> pl.DataFrame:
    """Nested objects (structs) become dotted columns: ``subscription: {sms}`` → ``subscription.sms``."""
    cols = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Struct):
            inner = _flatten(df.select(pl.col(name).struct.unnest()), f"{prefix}{name}.")
            cols += [inner.get_column(c) for c in inner.columns]
        else:
            cols.append(df.get_column(name).alias(f"{prefix}{name}"))
    return pl.DataFrame(cols, height=df.height)


def _typed(raw: pl.DataFrame, types: Mapping[str, str], file: str, *, rows_are_lines: bool,
           contacts: Mapping[str, ContactField]) -> tuple[pl.DataFrame, list[Problem]]:
    """The ``customer.*`` frame and the problems, column by column (first bad column of a row wins).
    ``contacts``: the contact fields to normalise, by attribute name."""
    raw = raw.rename({c: c.removeprefix("customer.") for c in raw.columns if c.startswith("customer.")})
    if "id" not in raw.columns:
        raise AudienceError([Problem("no id column; columns are " + ", ".join(raw.columns), "missing_id_column", file, 1)])
    ids = raw.get_column("id")
    cid = ids.cast(pl.String).str.strip_chars()
    errors: list[tuple[str, str, pl.Series | pl.Expr]] = [("id", "missing_id", pl.when(cid.is_null() | (cid == ""))
                                                .then(pl.lit("the id is missing")).otherwise(None).alias("e"))]
    if not (ids.dtype == pl.String or ids.dtype.is_integer() or ids.dtype == pl.Null):  # as engine.audience
        kind = f"an id is text or a whole number, not {ids.dtype} ({'Parquet' if rows_are_lines else 'JSON'} type)"
        errors.append(("id", "id_type", pl.select(pl.when(ids.is_not_null()).then(pl.lit(kind))).to_series().alias("e")))
    cols = [cid.alias(ID)]
    for name in raw.columns:
        if name == "id":
            continue
        s = raw.get_column(name)
        if s.dtype == pl.String:
            s = pl.select(pl.when(s == "").then(None).otherwise(s)).to_series()
        ftype = types.get(name) or ("string" if name.startswith("subscription.") else None)
        value, err, code = s, None, "type"
        if name.startswith(OWN):  # refused where set; the column itself is not read
            errors.append((name, "reserved", pl.select(pl.when(s.is_not_null()).then(pl.lit(RESERVED))).to_series()))
            continue
        if ftype is not None:
            value, err = _coerce(s, ftype)
        elif s.dtype.is_float() and not s.is_finite().fill_null(True).all():
            err = _python(s, "number")[1]  # a free attribute: finite numbers only, as ``engine.audience``
        elif s.dtype.is_integer() and not _exact(s):
            err = _python(s, "number")[1]  # a free attribute: whole numbers a number holds exactly
        if name == "timezone":
            value, err, code = _check_zone(value, err)
        if name.startswith("subscription."):
            value, err, code = _check_status(value, err)
        contact = contacts.get(name)
        if contact is not None and (contact.normalise is not None or contact.handle_type is not None) \
                and (err is None or err.null_count() == err.len()):
            text = value.cast(pl.String)
            good, mark, kind = check_contact(contact, text)
            if kind is not None and kind.null_count() < kind.len():
                cols.append(kind.alias(f"customer.{HANDLE_TYPE}{name}"))
            value = pl.select(pl.coalesce(good, text)).to_series()
            if mark.null_count() < mark.len():
                cols.append(mark.alias(f"customer.{HANDLE_ERROR}{name}"))
        if err is not None:
            errors.append((name, code, err.alias("e")))
        cols.append(value.alias(f"customer.{name}"))
    frame = pl.DataFrame(cols, height=raw.height)
    problems = _problems(errors, file, raw.height)
    if problems and not rows_are_lines:
        raise _Bad("bad rows")
    return frame, problems


def _problems(errors: list[tuple[str, str, Any]], file: str, height: int) -> list[Problem]:
    table = pl.select([(e if isinstance(e, pl.Series) else pl.select(e).to_series()).alias(f"{i}")
                       for i, (_, _, e) in enumerate(errors)]) if errors else pl.DataFrame()
    if table.width == 0:
        return []
    if table.height == 1 and height != 1:
        table = pl.DataFrame([pl.repeat(table[c][0], height, eager=True).alias(c) for c in table.columns])
    any_bad = table.select(pl.any_horizontal(pl.all().is_not_null()).alias("b")).to_series()
    out = []
    for row in table.with_row_index("_row").filter(any_bad).iter_rows():
        i = next(k for k, v in enumerate(row[1:]) if v is not None)
        name, code, _ = errors[i]
        out.append(Problem(row[i + 1], code, file, row[0] + 1, path=name))
    return out


def _coerce(s: pl.Series, ftype: str) -> tuple[pl.Series, pl.Series | None]:
    """(values in the engine's form, error messages or None) — ``coerce`` semantics, vectorised."""
    target = _DTYPES[ftype]
    if s.dtype == pl.Null:
        return s.cast(target), None
    if s.dtype == pl.String and ftype != "string" and s.str.contains(_PY_ONLY_SPACE).any():
        return _python(s, ftype)  # Python's strip() removes these, polars' strip_chars() does not
    if ftype == "list" and s.dtype == pl.String:
        parts = s.str.split("|").list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
        return parts, None
    if ftype == "string" and s.dtype == pl.String:
        return s, None
    if ftype == "boolean" and s.dtype == pl.String:
        key = s.str.strip_chars().str.to_lowercase()
        value = key.replace_strict(list(_BOOL), list(_BOOL.values()), default=None, return_dtype=pl.Boolean)
        if (s.is_not_null() & value.is_null()).any():
            return _python(s, ftype)
        return value, None
    if ftype in ("integer", "number") and s.dtype.is_numeric() and s.dtype != pl.Boolean:
        fast = s.cast(target, strict=False)  # Int128 beyond 64 bits: null, sent to ``coerce`` below
        if (s.dtype.is_float() and (ftype == "integer" or not s.is_finite().fill_null(True).all())
                or fast.null_count() != s.null_count() or ftype == "number" and s.dtype.is_integer()
                and not _exact(s)):
            return _python(s, ftype)
        return fast, None
    if ftype in ("integer", "number") and s.dtype == pl.String:
        text = s.str.strip_chars()
        if text.str.contains(INTEGER_TEXT).fill_null(True).all():
            whole = text.cast(pl.Int64, strict=False)
            if ftype == "number" and not _exact(whole):
                return _python(s, ftype)
            fast = whole.cast(target)
        elif ftype == "number" and text.str.contains(NUMBER_TEXT).fill_null(True).all():
            fast = text.cast(pl.Float64, strict=False)
        else:
            return _python(s, ftype)
        if fast.null_count() == s.null_count() and (target != pl.Float64 or fast.is_finite().fill_null(True).all()):
            return fast, None
        return _python(s, ftype)
    if ftype == "date" and s.dtype == pl.String:
        text = s.str.strip_chars()
        ok = text.str.contains(DATE_TEXT) & text.str.to_date("%Y-%m-%d", strict=False).is_not_null()
        if ok.fill_null(True).all():
            return text, None
        return _python(s, ftype)
    if ftype == "list" and s.dtype == pl.List(pl.String):
        if s.list.eval(pl.element().is_null()).list.any().any():
            return _python(s, ftype)  # null items: refused by ``coerce``
        return s, None
    if ftype == "boolean" and s.dtype == pl.Boolean:
        return s, None
    return _python(s, ftype)


def _exact(whole: pl.Series) -> bool:
    """Whether every whole number of an integer column is held exactly by a ``number`` (Float64)."""
    return bool(whole.is_between(-EXACT_FLOAT, EXACT_FLOAT).fill_null(True).all())


def _python(s: pl.Series, ftype: str) -> tuple[pl.Series, pl.Series]:
    """``coerce`` once per distinct value."""
    def fn(value: Any) -> Any:
        return coerce(ftype, value)

    uniq = s.drop_nulls().unique().to_list() if s.dtype != pl.Object else list({v for v in s.to_list() if v is not None})
    values, errs = [], []
    for v in uniq:
        try:
            values.append(fn(v))
            errs.append(None)
        except ValueError as exc:
            values.append(None)
            errs.append(str(exc))
    target = _DTYPES[ftype]
    if ftype == "number" and any(isinstance(v, float) for v in values):
        values = [float(v) if v is not None else None for v in values]
    good = s.replace_strict(uniq, values, default=None, return_dtype=target)
    bad = s.replace_strict(uniq, errs, default=None, return_dtype=pl.String)
    return good, bad


def _check_zone(value: pl.Series, err: pl.Series | None) -> tuple[pl.Series, pl.Series | None, str]:
    uniq = value.drop_nulls().unique().to_list()
    unknown = [z for z in uniq if zone(z) is None]
    if not unknown:
        return value, err, "type"
    msgs = [f"unknown IANA time zone {z!r}" for z in unknown]
    zerr = value.replace_strict(unknown, msgs, default=None, return_dtype=pl.String)
    if err is not None:
        zerr = pl.select(pl.coalesce(err, zerr)).to_series()
    return value, zerr, "timezone"


def _check_status(value: pl.Series, err: pl.Series | None) -> tuple[pl.Series, pl.Series | None, str]:
    """A ``subscription.<channel>`` column: values outside the closed set are errors (once per value)."""
    unknown = value.filter(value.is_not_null() & ~value.is_in(list(SUBSCRIPTION_STATUSES))).unique().to_list()
    if not unknown:
        return value, err, "type"
    serr = value.replace_strict(unknown, [status_error(v) for v in unknown], default=None, return_dtype=pl.String)
    if err is not None:
        serr = pl.select(pl.coalesce(err, serr)).to_series()
    return value, serr, "status"


def frame_from_customers(customers: Iterable[Customer], types: Mapping[str, str] | None = None) -> pl.DataFrame:
    """A frame from Customer objects (``customer.id`` and one ``customer.<attr>`` column per attribute).

    Column types come from ``types`` when given, else from the values; ``ValueError`` when one
    attribute holds values of incompatible types (the caller then stays per-recipient)."""
    customers = list(customers)
    keys = list(dict.fromkeys(k for c in customers for k in c.attributes))
    cols = [pl.Series(ID, [c.id for c in customers], dtype=pl.String)]
    for key in keys:
        values = [c.attributes.get(key) for c in customers]
        cols.append(pl.Series(f"customer.{key}", values, dtype=_infer(key, values, types or {})))
    return pl.DataFrame(cols, height=len(customers))


def _infer(key: str, values: list[Any], types: Mapping[str, str]) -> PolarsDataType:
    kinds = {type(v) for v in values if v is not None}
    if key in types and types[key] != "number":
        return _DTYPES[types[key]]
    if kinds <= {str}:
        return pl.String
    if kinds <= {bool}:
        return pl.Boolean
    if kinds <= {int}:
        return pl.Int64
    if kinds <= {int, float}:
        return pl.Float64
    if kinds <= {list, tuple} and all(isinstance(x, str) for v in values if v is not None for x in v):
        return pl.List(pl.String)
    raise ValueError(f"attribute {key} holds values of several types: {sorted(k.__name__ for k in kinds)}")


def complete(frame: pl.DataFrame, types: Mapping[str, str], channels: Iterable[str] = ()) -> pl.DataFrame:
    """Add the columns channels and steps read, as nulls, where the audience has none: every catalogue
    attribute (the registered contact fields among them), ``dnd``, ``blocked``, ``timezone`` and
    ``subscription.<channel>``."""
    want: dict[str, PolarsDataType] = {f"customer.{k}": _DTYPES[t] for k, t in types.items()}
    want["customer.timezone"] = pl.String
    want.update({"customer.dnd": pl.Boolean, "customer.blocked": pl.Boolean})
    want.update({f"customer.subscription.{c}": pl.String for c in channels})
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in want.items() if name not in frame.columns]
    return frame.with_columns(missing) if missing else frame


__all__ = ["FrameRead", "complete", "frame_from_customers", "per_unique", "read_frame"]
