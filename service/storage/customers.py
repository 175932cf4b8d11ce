"""Customers in the store: the mapping between a ``Customer`` row and the engine's flat attributes, bulk upsert
from JSON lines, CSV or Parquet, and deletion by anonymisation.

The mapping (both directions, explicit):

* ``customer.id`` ↔ ``external_id`` (unique per org);
* the contact handles and the fields rules use most ↔ typed columns (:data:`TEXT_COLUMNS`, ``dnd``), when
  the value has the column's type (an org catalogue typing ``tier`` as a number keeps it in ``attributes``);
* ``subscription.<channel>`` ↔ ``subscriptions`` (JSON: channel → recorded status);
* everything else (catalogue attributes, free attributes, ``handle_error.*`` / ``handle_type.*`` marks of a
  malformed or typed contact handle) ↔ ``attributes`` (JSON, flat keys as the engine spells them).

Rows are checked by the engine's own audience reader (``engine.columnar.read_frame``), so the service accepts
and refuses exactly the rows the CLI does, with the same messages; the problems name ``file:line:column``.
An upsert merges as ``engine.audience.merge_customers`` does: a row's non-empty values replace the stored
ones, missing values keep them; a contact handle sent again drops its old ``handle_error``/``handle_type``
marks. The write is set-based: ``INSERT … ON CONFLICT DO UPDATE`` with ``executemany`` on SQLite, ``COPY``
into a temporary table and one ``INSERT … SELECT … ON CONFLICT`` on PostgreSQL; no ORM object per row.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from engine.columnar.frame import ID, read_frame
from engine.errors import AudienceError, Problem
from engine.fields import FieldCatalogue
from engine.model import Customer as EngineCustomer
from engine.reachability import HANDLE_ERROR, HANDLE_TYPE
from engine.runtime import Herald
from service.storage.customer_changes import change_generation, drop_copy
from service.storage.erasure import erase_customer
from service.storage.tables import AudienceMember, Customer, utcnow

#: typed text columns (attribute name → the column's length limit)
TEXT_COLUMNS: dict[str, int] = {
    "phone": 40, "email": 320, "push_token": 4096, "line_id": 100, "viber_id": 100, "wechat_openid": 100,
    "whatsapp": 40, "timezone": 64, "language": 35, "tier": 50, "region": 100, "city": 100,
}
#: typed boolean columns
BOOL_COLUMNS = ("dnd",)
EXTERNAL_ID_MAX = 200
SUBSCRIPTION = "subscription."
#: the upload formats, by the suffix the engine's reader knows them by
FORMATS = ("jsonl", "csv", "parquet")
BATCH = 5000
#: rows of one PostgreSQL upsert from which the table's statistics are gathered again in it
ANALYZE_AT = 10_000


@dataclass
class UpsertResult:
    """What a bulk upsert did: rows received and written (created / updated), and the rows refused."""

    received: int
    created: int = 0
    updated: int = 0
    rejected: list[Problem] = field(default_factory=list)


# --- the mapping -------------------------------------------------------------------------------------


def row_attributes(row: Customer) -> dict[str, Any]:
    """The engine's flat attributes of a stored customer (no ``None`` values; ``id`` not included)."""
    attrs: dict[str, Any] = {}
    for name in TEXT_COLUMNS:
        value = getattr(row, name)
        if value is not None:
            attrs[name] = value
    if row.dnd is not None:
        attrs["dnd"] = row.dnd
    for channel, status in sorted((row.subscriptions or {}).items()):
        attrs[SUBSCRIPTION + channel] = status
    for key, value in (row.attributes or {}).items():
        if value is not None:
            attrs.setdefault(key, value)
    return dict(sorted(attrs.items()))


def to_engine_customer(row: Customer) -> EngineCustomer:
    """The engine's ``Customer`` of a stored row."""
    return EngineCustomer(row.external_id, row_attributes(row))


def _columns_of(frame: pl.DataFrame) -> tuple[list[str], list[str], list[str], list[str]]:
    """(typed text columns, typed bool columns, subscription channels, attribute keys) present in ``frame``
    with at least one value (all-null columns carry nothing to store)."""
    text, flags, channels, rest = [], [], [], []
    for name, dtype in frame.schema.items():
        if name == ID or frame.get_column(name).null_count() == frame.height:
            continue
        key = name.removeprefix("customer.")
        if key in TEXT_COLUMNS and dtype == pl.String:
            text.append(key)
        elif key in BOOL_COLUMNS and dtype == pl.Boolean:
            flags.append(key)
        elif key.startswith(SUBSCRIPTION) and dtype == pl.String:
            channels.append(key.removeprefix(SUBSCRIPTION))
        else:
            rest.append(key)
    return text, flags, channels, rest


def _json_object(items: Sequence[tuple[str, str]]) -> pl.Expr:
    """A JSON object per row from ``(key, column)`` pairs, holding only the non-null values (``{}`` for none)."""
    if not items:
        return pl.lit("{}")
    frags = []
    for key, column in items:
        encoded = pl.struct(pl.col(column).alias(key)).struct.json_encode()
        frags.append(pl.when(pl.col(column).is_not_null()).then(encoded.str.slice(1, encoded.str.len_chars() - 2)))
    return pl.concat_str([pl.lit("{"), pl.concat_str(frags, separator=",", ignore_nulls=True), pl.lit("}")])


# --- reading and checking uploads -----------------------------------------------------------------


def read_customers(data: bytes, fmt: str, catalogue: FieldCatalogue, *, keep_valid: bool = False,
                   name: str = "upload") -> tuple[pl.DataFrame, list[Problem]]:
    """Check an upload (``fmt``: jsonl, csv or parquet) with the engine's audience reader; (the frame of good
    rows, the problems). Raises ``AudienceError`` (problems naming ``name``) on any bad row unless
    ``keep_valid``. Values longer than the store's columns are refused too."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown upload format {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="herald-upload-") as folder:
        path = Path(folder) / f"upload.{fmt}"
        path.write_bytes(data)
        try:
            read = read_frame(path, catalogue, keep_valid=keep_valid)
        except AudienceError as exc:
            raise AudienceError([_named(p, name) for p in exc.problems],
                                exc.summary.replace(str(path), name)) from None
    frame, problems = read.frame, [_named(p, name) for p in read.rejected]
    frame, too_long = _over_limits(frame, name)
    problems += too_long
    if too_long and not keep_valid:
        raise AudienceError(problems, f"{name}: {len(problems)} bad row(s); nothing was stored")
    return frame, problems


def _named(problem: Problem, name: str) -> Problem:
    return dataclasses.replace(problem, file=name)


def _over_limits(frame: pl.DataFrame, name: str) -> tuple[pl.DataFrame, list[Problem]]:
    """The frame without rows holding values longer than their column, and a problem per such row (named by
    its id: the frame no longer knows the line)."""
    limits = {ID: ("id", EXTERNAL_ID_MAX)}
    limits.update({f"customer.{k}": (k, n) for k, n in TEXT_COLUMNS.items()
                   if frame.schema.get(f"customer.{k}") == pl.String})
    problems, bad = [], pl.repeat(False, frame.height, eager=True)
    for column, (key, limit) in limits.items():
        if column not in frame.columns:
            continue
        over = (frame.get_column(column).str.len_chars() > limit).fill_null(False)
        if over.any():
            for cid in frame.filter(over).get_column(ID).to_list():
                problems.append(Problem(f"customer {str(cid)[:60]!r}: {key} is longer than the {limit} characters the "
                                        "store keeps", "too_long", name, path=key))
            bad = bad | over
    return (frame.filter(~bad) if problems else frame), problems


def problem_path(problem: Problem) -> str:
    """``file:line:column`` of an upload problem (the column by number where known, else by name)."""
    where = problem.file or "upload"
    if problem.line is not None:
        where += f":{problem.line}"
    column = problem.column if problem.column is not None else problem.path or None
    return f"{where}:{column}" if column is not None else where


# --- writing ------------------------------------------------------------------------------------------


def upsert_customers(session: Session, org_id: int, herald: Herald, data: bytes, fmt: str, *,
                     keep_valid: bool = False, name: str = "upload") -> UpsertResult:
    """Check an upload and upsert its customers into ``org_id`` (in ``session``'s transaction); raises
    ``AudienceError`` and writes nothing on any bad row unless ``keep_valid``."""
    frame, problems = read_customers(data, fmt, herald.catalogue, keep_valid=keep_valid, name=name)
    created, updated = upsert_frame(session, org_id, frame, herald.catalogue)
    return UpsertResult(frame.height + len(problems), created, updated, problems)


def upsert_frame(session: Session, org_id: int, frame: pl.DataFrame, catalogue: FieldCatalogue) -> tuple[int, int]:
    """Upsert a checked frame (``customer.*`` columns, ids unique) by (org, external id); (created, updated).
    An anonymised customer sent again is live again, with only the new values."""
    if frame.height == 0:
        return 0, 0
    text, flags, channels, rest = _columns_of(frame)
    wide = frame.select(
        pl.col(ID).alias("external_id"),
        *[pl.col(f"customer.{k}").alias(k) for k in text],
        *[pl.col(f"customer.{k}").alias(k) for k in flags],
        _json_object([(c, f"customer.{SUBSCRIPTION}{c}") for c in channels]).alias("subscriptions"),
        _json_object([(k, f"customer.{k}") for k in rest]).alias("attributes"),
    )
    now = utcnow()
    contacts = _contacts_present(catalogue, text, rest)
    conn = session.connection()
    dialect = conn.dialect.name
    gen = change_generation(conn, org_id)
    if dialect == "sqlite":
        _upsert_sqlite(conn.connection.dbapi_connection, org_id, wide, text, flags, contacts, now, gen)
    elif dialect == "postgresql":
        _upsert_postgres(conn.connection.dbapi_connection, org_id, wide, text, flags, contacts, now, gen)
    else:  # pragma: no cover - the service runs on these two
        raise RuntimeError(f"bulk upsert is not written for {dialect}")
    created = session.exec(select(func.count()).select_from(Customer)
                           .where(col(Customer.org_id) == org_id, col(Customer.created_at) == now)).one()
    return int(created), frame.height - int(created)


def _contacts_present(catalogue: FieldCatalogue, text: list[str], rest: list[str]) -> list[tuple[str, bool]]:
    """(contact name, held in a typed column) for each registered contact the upload sends."""
    return [(c, c in text) for c in catalogue.contacts if c in text or c in rest]


def _set_clauses(text: list[str], flags: list[str], contacts: list[tuple[str, bool]], dialect: str) -> list[str]:
    sets = [f"{c} = coalesce(excluded.{c}, customer.{c})" for c in [*text, *flags]]
    if dialect == "sqlite":
        attrs = "customer.attributes"
        for name, typed in contacts:
            present = f"excluded.{name} IS NOT NULL" if typed else f"json_type(excluded.attributes, '$.\"{name}\"') IS NOT NULL"
            attrs = (f"CASE WHEN {present} THEN json_remove({attrs}, '$.\"{HANDLE_ERROR}{name}\"', "
                     f"'$.\"{HANDLE_TYPE}{name}\"') ELSE {attrs} END")
        sets += [f"attributes = json_patch({attrs}, excluded.attributes)",
                 "subscriptions = json_patch(customer.subscriptions, excluded.subscriptions)"]
    else:
        attrs = "customer.attributes::jsonb"
        marks = []
        for name, typed in contacts:
            present = f"excluded.{name} IS NOT NULL" if typed else f"excluded.attributes::jsonb ? '{name}'"
            marks += [f"CASE WHEN {present} THEN '{mark}{name}' END" for mark in (HANDLE_ERROR, HANDLE_TYPE)]
        if marks:  # jsonb - text[]: the marks of every contact sent again, dropped (one expression per contact)
            attrs = f"({attrs} - array_remove(ARRAY[{', '.join(marks)}]::text[], NULL))"
        sets += [f"attributes = ({attrs} || excluded.attributes::jsonb)::json",
                 "subscriptions = (customer.subscriptions::jsonb || excluded.subscriptions::jsonb)::json"]
    return [*sets, "updated_at = excluded.updated_at", "deleted_at = NULL", "change_gen = excluded.change_gen"]


def _upsert_sqlite(dbapi: Any, org_id: int, wide: pl.DataFrame, text: list[str], flags: list[str],
                   contacts: list[tuple[str, bool]], now: datetime, gen: int) -> None:
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    names = ["external_id", *text, *flags, "subscriptions", "attributes"]
    sql = (f"INSERT INTO customer (org_id, {', '.join(names)}, created_at, updated_at, change_gen) "
           f"VALUES ({org_id}, {', '.join('?' for _ in names)}, '{stamp}', '{stamp}', {int(gen)}) "
           f"ON CONFLICT (org_id, external_id) DO UPDATE SET {', '.join(_set_clauses(text, flags, contacts, 'sqlite'))}")
    cur = dbapi.cursor()
    try:
        for start in range(0, wide.height, 50_000):
            cur.executemany(sql, wide.slice(start, 50_000).iter_rows())
    finally:
        cur.close()


def _upsert_postgres(dbapi: Any, org_id: int, wide: pl.DataFrame, text: list[str], flags: list[str],
                     contacts: list[tuple[str, bool]], now: datetime, gen: int) -> None:
    names = ["external_id", *text, *flags, "subscriptions", "attributes"]
    types = {"external_id": "text", "subscriptions": "text", "attributes": "text", **{c: "text" for c in text},
             **{c: "boolean" for c in flags}}
    with dbapi.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS herald_customer_upload")
        cur.execute("CREATE TEMP TABLE herald_customer_upload ("
                    + ", ".join(f"{n} {types[n]}" for n in names) + ") ON COMMIT DROP")
        with cur.copy(f"COPY herald_customer_upload ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, wide.height, 100_000):
                copy.write(wide.slice(start, 100_000).write_csv(include_header=False, null_value=""))
        select_cols = ", ".join(f"{n}::json" if n in ("subscriptions", "attributes") else n for n in names)
        cur.execute(
            f"INSERT INTO customer (org_id, {', '.join(names)}, created_at, updated_at, change_gen) "
            f"SELECT %(org)s, {select_cols}, %(now)s, %(now)s, %(gen)s FROM herald_customer_upload "
            f"ON CONFLICT (org_id, external_id) DO UPDATE SET {', '.join(_set_clauses(text, flags, contacts, 'pg'))}",
            {"org": org_id, "now": now, "gen": gen})
        cur.execute("DROP TABLE herald_customer_upload")
        if wide.height >= ANALYZE_AT:  # fresh statistics, or the planner guesses a handful of rows per org
            cur.execute("ANALYZE customer")


# --- reading and deleting one customer -----------------------------------------------------------------


def get_customer(session: Session, org_id: int, external_id: str) -> Customer | None:
    """The live (not anonymised) customer ``external_id`` of ``org_id``, or ``None``."""
    return session.exec(select(Customer).where(Customer.org_id == org_id, Customer.external_id == external_id,
                                               col(Customer.deleted_at).is_(None))).first()


def list_customers(session: Session, org_id: int, after: int, limit: int) -> list[Customer]:
    """Up to ``limit`` live customers of ``org_id`` with a row id above ``after``, in id order."""
    return list(session.exec(select(Customer).where(Customer.org_id == org_id, col(Customer.deleted_at).is_(None),
                                                    col(Customer.id) > after)
                             .order_by(col(Customer.id)).limit(limit)).all())


def anonymise(session: Session, org_id: int, external_id: str) -> bool:
    """Delete a customer by anonymising it: contacts and attributes cleared, ``deleted_at`` set, its upload
    group memberships removed, and what runs kept about it erased (:func:`service.storage.erasure.erase_customer`:
    rendered messages, outbox rows, call tasks, export rows, stored decisions); the rows stay (so counts of past
    runs stay true). False when there is no live customer ``external_id`` in ``org_id``."""
    row = get_customer(session, org_id, external_id)
    if row is None:
        return False
    cleared: dict[str, Any] = {name: None for name in [*TEXT_COLUMNS, *BOOL_COLUMNS]}
    conn = session.connection()
    gen = change_generation(conn, org_id)
    session.execute(update(Customer).where(col(Customer.id) == row.id)
                    .values(**cleared, subscriptions={}, attributes={}, deleted_at=utcnow(), updated_at=utcnow(),
                            change_gen=gen))
    drop_copy(conn, org_id)
    session.execute(AudienceMember.__table__.delete().where(AudienceMember.__table__.c.customer_id == row.id))  # type: ignore[attr-defined]
    erase_customer(session, org_id, external_id)
    session.expire(row)
    return True


def iter_problems(problems: Sequence[Problem]) -> Iterator[dict[str, str]]:
    """Upload problems as ``{path: file:line:column, code, message}`` items."""
    for p in problems:
        yield {"path": problem_path(p), "code": p.code, "message": p.message}


def attributes_json(attrs: Mapping[str, Any]) -> bytes:
    """One JSON line (``id`` and flat attributes) of a customer given as data, for the reader."""
    return json.dumps(dict(attrs), ensure_ascii=False).encode() + b"\n"
