"""Customers read straight from the ``customer`` table as the engine's audience frame (no ORM objects).

:func:`read_customers_frame` reads an org's live customers into a polars frame of the shape the engine's bulk
path takes from ``engine.columnar.read_frame`` (``customer.id`` and ``customer.<attribute>`` columns, typed
by the field catalogue, completed by ``engine.columnar.frame.complete``, columns in name order). The whole org
is read with connectorx on PostgreSQL and with the stdlib driver's cursor on SQLite (one SQLite library per
process); a list of ids, or the rows changed since a horizon, with bound parameters. The JSON columns are
parsed once with the types the catalogue and the registry give their keys (types inferred over every row
only when a key is unknown). ``service.storage.customer_copy`` keeps a columnar copy of this frame.
"""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, text

from engine.columnar.frame import ID, complete
from engine.reachability import HANDLE_ERROR, HANDLE_TYPE
from engine.runtime import Herald
from service.storage.customers import BOOL_COLUMNS, SUBSCRIPTION, TEXT_COLUMNS

_CHUNK = 900
#: rows fetched and turned into a frame at a time when reading a whole org from SQLite
_BATCH = 50_000
DTYPES: dict[str, pl.DataType] = {"string": pl.String(), "integer": pl.Int64(), "number": pl.Float64(),
                                  "boolean": pl.Boolean(), "date": pl.String(), "datetime": pl.String(),
                                  "list": pl.List(pl.String())}


def _cx_uri(engine: Engine) -> str:
    """The engine's URL as connectorx spells it (no SQLAlchemy driver suffix)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


_COLUMNS = ["external_id", *TEXT_COLUMNS, *BOOL_COLUMNS, "subscriptions", "attributes"]


def _raw_customers(engine: Engine, org_id: int, external_ids: Sequence[str] | None, since: int | None,
                   conn: Connection | None = None) -> pl.DataFrame:
    """The org's live customer rows (the columns of :data:`_COLUMNS`), in no particular order: all of them,
    those of ``external_ids``, or those changed at or after the change generation ``since``.

    PostgreSQL, whole org: connectorx (columnar, straight into Arrow). SQLite, changed rows and lists of ids:
    the connection's own driver (``conn``'s when given), rows handed to polars column by column. (connectorx and ADBC bundle their own
    SQLite library; two SQLite libraries on one file in one process break its POSIX locks and hide WAL pages.)
    No ``ORDER BY``: the caller sorts the frame (a sort in the database spilled to disk on PostgreSQL).
    """
    cols = ", ".join(f"CAST({c} AS TEXT) AS {c}" if c in ("subscriptions", "attributes") else
                     f"CAST({c} AS INTEGER) AS {c}" if c in BOOL_COLUMNS else c for c in _COLUMNS)
    schema: dict[str, Any] = {c: pl.String for c in _COLUMNS} | {c: pl.Boolean for c in BOOL_COLUMNS}
    if external_ids is None:
        query = f"SELECT {cols} FROM customer WHERE org_id = {int(org_id)} AND deleted_at IS NULL"
        if since is not None:
            query += f" AND change_gen >= {int(since)}"
        elif engine.dialect.name == "postgresql":
            return _typed_raw(pl.read_database_uri(query, _cx_uri(engine), engine="connectorx"), schema)
        with _connection(engine, conn) as c, _no_gc():
            cursor = c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:  # the driver's own tuples: no SQLAlchemy row object per customer
                cursor.execute(query)
                parts = [_rows_frame(rows, schema) for rows in iter(lambda: cursor.fetchmany(_BATCH), [])]
            finally:
                cursor.close()
        return pl.concat(parts, rechunk=True) if parts else _rows_frame([], schema)
    ids = sorted(set(external_ids))
    stmt = text(f"SELECT {cols} FROM customer WHERE org_id = :org AND deleted_at IS NULL "
                "AND external_id IN :ids").bindparams(bindparam("ids", expanding=True))
    rows: list[Any] = []
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            rows += conn.execute(stmt, {"org": org_id, "ids": ids[start:start + _CHUNK]}).fetchall()
    return _rows_frame(rows, schema)


@contextmanager
def _connection(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """``conn`` when given, else a connection of ``engine`` for the block."""
    if conn is not None:
        yield conn
        return
    with engine.connect() as own:
        yield own


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: reading a million rows makes tens of millions of tuples and strings
    (none in a cycle), and each full collection walks them all, which made reading grow faster than linearly."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _rows_frame(rows: Sequence[Any], schema: Mapping[str, Any]) -> pl.DataFrame:
    """Rows of :data:`_COLUMNS` as a typed frame (JSON columns as text; SQLite's 0/1 as Booleans), built a
    column at a time (cheaper than polars' row-wise constructor)."""
    raw = {c: pl.Int64 if t == pl.Boolean else t for c, t in schema.items()}
    if not rows:
        return pl.DataFrame(schema=dict(schema))
    columns = zip(*rows, strict=True)
    frame = pl.DataFrame([pl.Series(c, v, dtype=t) for (c, t), v in zip(raw.items(), columns, strict=True)])
    return _typed_raw(frame, schema)


def _typed_raw(frame: pl.DataFrame, schema: Mapping[str, Any]) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame(schema=dict(schema))
    return frame.with_columns([pl.col(c).cast(t) for c, t in schema.items() if frame.schema.get(c) != t])


#: a key of a JSON object (at any depth) and its opening. In JSON text every ``"`` inside a string is escaped,
#: so a ``"`` right after ``{`` or ``,`` (white space allowed) opens a string; followed by ``:`` it is a key.
_KEY = r'[{,]\s*"(?:[^"\\]|\\.)*"\s*:'


def _keys_in(json_text: pl.Series) -> set[str]:
    """Every key of the JSON objects of a column, as written (escapes not undone), nested ones included: a
    superset of the top-level keys, found by one regex pass in polars (no JSON parsed)."""
    found = json_text.str.extract_all(_KEY).explode().drop_nulls().unique()
    return {k for k in found.str.extract(r'"((?:[^"\\]|\\.)*)"', 1).to_list() if k is not None}


def _decoded_as(json_text: pl.Series, known: Mapping[str, pl.DataType], prefix: str) -> list[pl.Series] | None:
    """The keys of a column of flat JSON objects as columns named ``prefix + key``, parsed in one pass with the
    types the keys are known to have (``known``), instead of a schema inferred by a first pass over every
    row. ``None`` when the text holds a key not in ``known`` (or one written with escapes), a value polars
    cannot convert to its key's type, or a line break: then the caller infers the types."""
    if json_text.null_count() or bool(json_text.str.contains("\n", literal=True).any()):
        return None
    keys = _keys_in(json_text)
    if not keys <= known.keys():
        return None
    if not keys:
        return []
    schema = {k: known[k] for k in sorted(keys)}
    lines = io.BytesIO()  # the texts one per line, written by polars as they are (no Python string of them all)
    pl.DataFrame({"json": json_text}).write_csv(lines, include_header=False, quote_style="never")
    lines.seek(0)
    try:
        parsed = pl.read_ndjson(lines, schema=schema)
    except pl.exceptions.PolarsError:
        return None
    if parsed.height != json_text.len():
        return None
    return [parsed.get_column(k).alias(prefix + k) for k in schema if parsed.get_column(k).null_count() < parsed.height]


def _decoded(json_text: pl.Series, prefix: str) -> list[pl.Series]:
    """The keys of a column of flat JSON objects as columns named ``prefix + key``, types inferred over every
    row (the general, slower way)."""
    if json_text.len() == 0 or bool((json_text.fill_null("{}") == "{}").all()):
        return []
    decoded = json_text.fill_null("{}").str.json_decode(infer_schema_length=None)
    if not isinstance(decoded.dtype, pl.Struct):
        return []
    return [decoded.struct.field(f.name).alias(prefix + f.name) for f in decoded.dtype.fields]


def known_attributes(herald: Herald) -> dict[str, pl.DataType]:
    """The attribute keys whose type the service knows: the catalogue's, the marks the audience reader sets on
    each registered contact (``handle_error.*``, ``handle_type.*``: text) and ``blocked``."""
    known = {name: DTYPES[t] for name, t in herald.catalogue.customer_types().items()}
    for contact in herald.catalogue.contacts:
        known[f"{HANDLE_ERROR}{contact}"] = pl.String()
        known[f"{HANDLE_TYPE}{contact}"] = pl.String()
    known.setdefault("blocked", pl.Boolean())
    return known


def read_customers_frame(engine: Engine, org_id: int, herald: Herald, external_ids: Sequence[str] | None = None,
                         *, since: int | None = None, conn: Connection | None = None) -> pl.DataFrame:
    """The live customers of ``org_id`` (all, those of ``external_ids``, or those changed at or after the change
    generation ``since``) read from the table as the engine's audience frame:
    ``customer.id`` and one ``customer.<attribute>`` column per stored attribute, typed by the catalogue,
    completed like ``read_frame`` (the registered channels' ``customer.subscription.<channel>`` included),
    columns in name order after ``customer.id``, rows sorted by ``customer.id``. Anonymised customers are
    never in it.

    The JSON columns are parsed with the types the catalogue and the registry give their keys, one pass;
    when a row holds anything else (a free attribute, a value of another type), the column's types are
    inferred over every row instead, as the audience reader would type them."""
    raw = _raw_customers(engine, org_id, external_ids, since, conn)
    types = herald.catalogue.customer_types()
    cols: list[pl.Series] = [raw.get_column("external_id").alias(ID)]
    for name in [*TEXT_COLUMNS, *BOOL_COLUMNS]:
        s = raw.get_column(name)
        if s.null_count() < s.len():
            cols.append(s.alias(f"customer.{name}"))
    channels: dict[str, pl.DataType] = {c: pl.String() for c in herald.registry.channels}
    subscriptions = raw.get_column("subscriptions")
    decoded = _decoded_as(subscriptions, channels, f"customer.{SUBSCRIPTION}")
    cols += decoded if decoded is not None else _decoded(subscriptions, f"customer.{SUBSCRIPTION}")
    attributes = raw.get_column("attributes")
    decoded = _decoded_as(attributes, known_attributes(herald), "customer.")
    taken = {c.name for c in cols}
    cols += [s for s in (decoded if decoded is not None else _decoded(attributes, "customer.")) if s.name not in taken]
    frame = pl.DataFrame(cols, height=raw.height)
    casts = []
    for name, dtype in frame.schema.items():
        ftype = types.get(name.removeprefix("customer."))
        if ftype is not None and dtype != DTYPES[ftype]:
            casts.append(pl.col(name).cast(DTYPES[ftype]))
    if casts:
        frame = frame.with_columns(casts)
    return in_order(complete(frame, types, herald.registry.channels)).sort(ID)

def in_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame``'s columns in one canonical order: ``customer.id``, then the rest by name."""
    return frame.select(ID, *sorted(c for c in frame.columns if c != ID))
