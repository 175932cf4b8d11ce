"""An org's customers kept as a columnar copy, so that a stored audience of a million is read in a fraction of
a second instead of the seconds a row-at-a-time driver and a million JSON texts cost (benchmarks/README.md).

The copy is the engine's audience frame of the org's live customers
(:func:`service.storage.customer_columns.read_customers_frame`), stored as Parquet in ``customer_copy`` with a
*horizon*: every customer row written at or after that change generation is read again from the table and
replaces its row of the copy (an anonymised one drops out). The frame handed to the engine is therefore
always the table's, never a stale copy:

* every write of a customer row stamps it with its writer's change generation (``customer_changes``,
  taken before the write): on SQLite the org's counter (a writer holds SQLite's one write lock until it
  commits, so generations follow commit order), on PostgreSQL the writing transaction's id. PostgreSQL
  refuses a write that does not (a trigger, migration 0006), so a forgotten writer fails every storage test
  (they all run on both databases); on SQLite such a trigger cost too much (benchmarks/README.md), so a
  write made there by hand must move ``customer_generation`` on by one and stamp it, or delete the org's
  ``customer_copy`` row;
* a horizon is taken before the rows are read (``customer_changes.horizon``): on SQLite one past the
  counter's committed value, on PostgreSQL the oldest transaction still running — every write below it had
  ended before the read began, so the read holds it; writes at or above it are read again next time;
* the copy and the changed rows are read in one snapshot of the database; the copy is used only when it was
  made for the same catalogue and channels (``shape``) and when few rows changed since (:data:`MAX_CHANGED`,
  or a tenth of the copy). Otherwise the org is read whole and the copy made again.

Anonymising a customer drops the org's copy (it holds their contacts), and so does removing customer rows by
any means (a trigger): the next read makes it again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, text

from engine.columnar.frame import ID, complete
from engine.runtime import Herald
from service.storage.customer_changes import horizon, lock_copy
from service.storage.customer_columns import in_order, known_attributes, read_customers_frame
from service.storage.tables import utcnow

#: bumped when the frame the copy stores changes meaning: older copies are then made again
COPY_FORMAT = 1
#: changed rows read on top of a copy: more than this (and more than a tenth of the copy) reads the org whole
MAX_CHANGED = 50_000
#: changed rows from which a read stores the merged frame as the new copy (fewer are cheaper to read again)
STORE_AT = 2_000


def shape_of(herald: Herald) -> str:
    """What the copy's frame depends on besides the rows: the catalogue's types, the channels, the format."""
    known = {k: str(v) for k, v in known_attributes(herald).items()}
    parts = [COPY_FORMAT, sorted(herald.catalogue.customer_types().items()), sorted(herald.registry.channels),
             sorted(known.items())]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def customers_frame(engine: Engine, org_id: int, herald: Herald, external_ids: Sequence[str] | None = None
                    ) -> pl.DataFrame:
    """The live customers of ``org_id`` (all, or those of ``external_ids``) as the engine's audience frame:
    ``customer.id`` and one ``customer.<attribute>`` column per stored attribute, typed by the catalogue,
    completed like ``read_frame``, sorted by ``customer.id``. The whole org comes from its copy brought up
    to date (made again when it cannot be); a list of ids is read from the table."""
    if external_ids is not None:
        return read_customers_frame(engine, org_id, herald, external_ids)
    return _org_frame(engine, org_id, herald, store=False)


def refresh(engine: Engine, org_id: int, herald: Herald) -> int:
    """Bring ``org_id``'s copy up to date and store it (after a bulk upload); the number of live customers."""
    return _org_frame(engine, org_id, herald, store=True).height


def _org_frame(engine: Engine, org_id: int, herald: Herald, *, store: bool) -> pl.DataFrame:
    shape = shape_of(herald)
    with _snapshot(engine) as conn:
        now = horizon(conn, org_id)
        copy = _copy_of(conn, org_id)
        merged = None
        if copy is not None and copy[1] == shape:
            merged = _merged(conn, engine, org_id, herald, *copy)
    if merged is not None:
        frame, changed = merged
        if (store and changed) or changed >= STORE_AT:
            _store(engine, org_id, now, shape, frame)
        return frame
    with engine.connect() as conn:
        now = horizon(conn, org_id)
    frame = read_customers_frame(engine, org_id, herald)
    _store(engine, org_id, now, shape, frame)
    return frame


def _copy_of(conn: Connection, org_id: int) -> tuple[int, str, int, bytes] | None:
    """``org_id``'s stored copy (horizon, shape, rows, Parquet), read on ``conn`` (PostgreSQL: in binary, not as
    hex text twice its size)."""
    cursor = conn.connection.dbapi_connection.cursor(  # type: ignore[union-attr]
        **({"binary": True} if conn.dialect.name == "postgresql" else {}))
    try:
        cursor.execute(f"SELECT horizon, shape, rows, data FROM customer_copy WHERE org_id = {int(org_id)}")
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else (int(row[0]), str(row[1]), int(row[2]), bytes(row[3]))


def _merged(conn: Connection, engine: Engine, org_id: int, herald: Herald, since: int, shape: str, rows: int,
            data: bytes) -> tuple[pl.DataFrame, int] | None:
    """The copy with the rows changed at or after ``since`` read again on top, and how many changed; ``None``
    when too many changed or when a changed row's column has another type than the copy's."""
    changed = [r[0] for r in conn.execute(text("SELECT external_id FROM customer WHERE org_id = :org "
                                                "AND change_gen >= :since"), {"org": org_id, "since": since})]
    if len(changed) > max(MAX_CHANGED, rows // 10):
        return None
    frame = pl.read_parquet(io.BytesIO(data))
    if not changed:
        return frame, 0
    fresh = read_customers_frame(engine, org_id, herald, since=since, conn=conn)
    if any(name in frame.schema and frame.schema[name] != dtype for name, dtype in fresh.schema.items()):
        return None
    kept = frame.filter(~pl.col(ID).is_in(pl.Series(changed, dtype=pl.String).implode()))
    frame = pl.concat([kept, fresh], how="diagonal").sort(ID)  # (polars' merge_sorted was 3× slower at 1M)
    empty = [c for c in frame.columns if c != ID and frame.get_column(c).null_count() == frame.height]
    types = herald.catalogue.customer_types()
    return in_order(complete(frame.drop(empty), types, herald.registry.channels)), len(changed)


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one snapshot of the database (a read transaction; rolled back)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.exec_driver_sql("SELECT 1")
        else:  # the stdlib driver opens no transaction for a read: open one, so every read shares a snapshot
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def _store(engine: Engine, org_id: int, at: int, shape: str, frame: pl.DataFrame) -> None:
    """Keep ``frame`` (read from horizon ``at``) as ``org_id``'s copy, unless a copy with a later horizon is
    stored or a customer was anonymised since ``at`` (the frame may hold their contacts: it is not kept)."""
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="lz4")
    params: dict[str, Any] = {"org": org_id, "at": at, "shape": shape, "rows": frame.height, "data": buf.getvalue(),
                              "now": utcnow()}
    with engine.begin() as conn:
        lock_copy(conn, org_id)  # one statement: on SQLite the check and the write are one step
        conn.execute(text(
            "INSERT INTO customer_copy (org_id, horizon, shape, rows, data, built_at) "
            "SELECT :org, :at, :shape, :rows, :data, :now WHERE NOT EXISTS (SELECT 1 FROM customer "
            "WHERE org_id = :org AND change_gen >= :at AND deleted_at IS NOT NULL) ON CONFLICT (org_id) DO UPDATE SET "
            "horizon = excluded.horizon, shape = excluded.shape, rows = excluded.rows, data = excluded.data, "
            "built_at = excluded.built_at WHERE customer_copy.horizon <= excluded.horizon"), params)
