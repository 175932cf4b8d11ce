"""Change generations of an org's customers: what every write of a customer row stamps on it (``change_gen``)
and the horizon a read of the table starts from (``service.storage.customer_copy`` explains why)."""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlmodel import Session

from service.storage.tables import Customer


def change_generation(conn: Connection, org_id: int) -> int:
    """The change generation a write of ``org_id``'s customers stamps on every row it writes (``change_gen``),
    taken in the writing transaction before its first customer write: SQLite's per-org counter moved on by
    one, or PostgreSQL's id of the writing transaction."""
    if conn.dialect.name == "postgresql":
        return int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text::bigint").scalar_one())
    return int(conn.execute(text(
        "INSERT INTO customer_generation (org_id, gen) VALUES (:org, 1) "
        "ON CONFLICT (org_id) DO UPDATE SET gen = customer_generation.gen + 1 RETURNING gen"), {"org": org_id}).scalar_one())


def horizon(conn: Connection, org_id: int) -> int:
    """A change generation below which every write of ``org_id``'s customers had ended when it was taken:
    what a read that starts after it holds, whatever it reads."""
    if conn.dialect.name == "postgresql":
        return int(conn.exec_driver_sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").scalar_one())
    gen = conn.execute(text("SELECT gen FROM customer_generation WHERE org_id = :org"), {"org": org_id}).scalar()
    return int(gen or 0) + 1


#: the first key of the PostgreSQL advisory lock that orders storing an org's copy and anonymising in it
COPY_LOCK = 0x68657261  # "hera"


def lock_copy(conn: Connection, org_id: int) -> None:
    """Order this transaction with the others that store or drop ``org_id``'s copy, until it ends (PostgreSQL;
    SQLite runs one writer at a time)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key, :org)"), {"key": COPY_LOCK, "org": org_id})


def drop_copy(conn: Connection, org_id: int) -> None:
    """Forget ``org_id``'s copy (in the caller's transaction, after it anonymised a customer): the next read of
    the org makes it again, and no copy read before this transaction commits is stored after it."""
    lock_copy(conn, org_id)
    conn.execute(text("DELETE FROM customer_copy WHERE org_id = :org"), {"org": org_id})


def stamp(session: Session, row: Customer) -> None:
    """Stamp ``row`` (a customer about to be written in ``session``) with its writer's change generation."""
    row.change_gen = change_generation(session.connection(), row.org_id)
