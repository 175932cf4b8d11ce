"""The org's columnar copy of its customers is never a stale answer: after every kind of write the frame a stored
audience is evaluated over is exactly what reading the whole table gives, on SQLite and PostgreSQL; a write that
does not stamp its change generation is refused by PostgreSQL (so no code path of the service can forget it); a copy made while a write was still running
does not hide that write; and the copy is really used (no whole-table read for a few changes)."""

from __future__ import annotations

import io
import json

import polars as pl
import pytest
from sqlalchemy import exc, text

from service.storage import customer_copy
from service.storage.customer_columns import read_customers_frame
from service.storage.customer_copy import customers_frame, refresh
from service.storage.customers import anonymise, upsert_customers
from service.storage.db import transaction
from service.storage.receipts import set_subscription
from service.storage.tables import Customer
from tests.service.conftest import make_org

N = 3000


def _lines(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _upsert(engine, org_id, herald, rows: list[dict]) -> None:
    with transaction(engine) as s:
        upsert_customers(s, org_id, herald, _lines(rows), "jsonl")


def _everyone(i: int) -> dict:
    row: dict = {"id": f"c{i:05d}", "email": f"user{i}@example.com", "tier": ["gold", "silver", None][i % 3],
                 "subscription.email": "subscribed" if i % 4 else "unsubscribed"}
    if i % 5:
        row["points"] = i
    return row


@pytest.fixture
def stored(db_engine, herald):
    """An org of N customers whose copy was made after the upload (as the bulk upload route does)."""
    org = make_org(db_engine)
    _upsert(db_engine, org.org_id, herald, [_everyone(i) for i in range(N)])
    assert refresh(db_engine, org.org_id, herald) == N
    return org.org_id


@pytest.fixture
def whole_reads(monkeypatch):
    """How many times the org was read whole from the table (not from its copy)."""
    calls = []
    real = customer_copy.read_customers_frame

    def spy(engine, org_id, herald, external_ids=None, **kw):
        if external_ids is None and kw.get("since") is None:
            calls.append(org_id)
        return real(engine, org_id, herald, external_ids, **kw)

    monkeypatch.setattr(customer_copy, "read_customers_frame", spy)
    return calls


def _same_as_the_table(engine, org_id, herald) -> pl.DataFrame:
    got = customers_frame(engine, org_id, herald)
    want = read_customers_frame(engine, org_id, herald)
    assert got.columns == want.columns
    assert got.schema == want.schema
    assert got.equals(want)
    return got


def test_after_every_kind_of_write_the_copy_gives_the_tables_frame(db_engine, herald, stored, whole_reads):
    org_id = stored
    _same_as_the_table(db_engine, org_id, herald)
    # an attribute changed, a value removed from nobody, a new customer, a free attribute never seen before
    _upsert(db_engine, org_id, herald, [{"id": "c00001", "tier": "platinum", "points": 7},
                                        {"id": "new-1", "email": "new@example.com", "favourite_colour": "teal"}])
    frame = _same_as_the_table(db_engine, org_id, herald)
    row = frame.filter(pl.col("customer.id") == "c00001").row(0, named=True)
    assert row["customer.tier"] == "platinum" and row["customer.points"] == 7
    assert frame.filter(pl.col("customer.id") == "new-1")["customer.favourite_colour"].to_list() == ["teal"]
    assert frame.height == N + 1
    # a subscription recorded from a receipt or an unsubscribe (the ORM path)
    with transaction(db_engine) as s:
        cid = s.exec(text("SELECT id FROM customer WHERE org_id = :o AND external_id = 'c00002'"),  # type: ignore[call-overload]
                     params={"o": org_id}).scalar_one()
        set_subscription(s, cid, "email", "hard_bounced")
    frame = _same_as_the_table(db_engine, org_id, herald)
    assert frame.filter(pl.col("customer.id") == "c00002")["customer.subscription.email"].to_list() == ["hard_bounced"]
    assert whole_reads == []  # three rounds of changes, all read on top of the copy


def test_a_deleted_customer_leaves_the_frame_and_the_stored_copy(db_engine, herald, stored, whole_reads):
    org_id = stored
    with transaction(db_engine) as s:
        assert anonymise(s, org_id, "c00003")
    with db_engine.connect() as conn:  # the copy held their address: it is gone with them
        assert conn.execute(text("SELECT count(*) FROM customer_copy WHERE org_id = :o"), {"o": org_id}).scalar() == 0
    frame = _same_as_the_table(db_engine, org_id, herald)
    assert "c00003" not in frame["customer.id"].to_list() and frame.height == N - 1
    with db_engine.connect() as conn:
        data = conn.execute(text("SELECT data FROM customer_copy WHERE org_id = :o"), {"o": org_id}).scalar_one()
    assert "user3@example.com" not in pl.read_parquet(io.BytesIO(bytes(data)))["customer.email"].to_list()
    # sent again, the customer is live again, with only the new values
    _upsert(db_engine, org_id, herald, [{"id": "c00003", "tier": "gold"}])
    frame = _same_as_the_table(db_engine, org_id, herald)
    assert frame.filter(pl.col("customer.id") == "c00003").row(0, named=True)["customer.email"] is None


def test_rows_removed_behind_the_copys_back_are_noticed(db_engine, herald, stored, whole_reads):
    org_id = stored
    with db_engine.begin() as conn:  # not a path of the service: a row removed by hand
        conn.execute(text("DELETE FROM customer WHERE org_id = :o AND external_id = 'c00004'"), {"o": org_id})
    frame = customers_frame(db_engine, org_id, herald)
    assert "c00004" not in frame["customer.id"].to_list() and frame.height == N - 1
    assert whole_reads == [org_id]  # removing rows dropped the copy: read whole


def test_a_copy_made_for_another_catalogue_is_not_used(db_engine, herald, stored, whole_reads):
    org_id = stored
    with db_engine.begin() as conn:
        conn.execute(text("UPDATE customer_copy SET shape = 'another catalogue' WHERE org_id = :o"), {"o": org_id})
    _same_as_the_table(db_engine, org_id, herald)
    assert whole_reads == [org_id]
    with db_engine.connect() as conn:
        shape = conn.execute(text("SELECT shape FROM customer_copy WHERE org_id = :o"), {"o": org_id}).scalar_one()
    assert shape == customer_copy.shape_of(herald)


def test_many_changes_read_the_org_whole_and_store_a_new_copy(db_engine, herald, stored, whole_reads, monkeypatch):
    org_id = stored
    monkeypatch.setattr(customer_copy, "MAX_CHANGED", 100)  # and a tenth of 3,000 is 300
    _upsert(db_engine, org_id, herald, [{"id": f"c{i:05d}", "points": -i} for i in range(301)])
    _same_as_the_table(db_engine, org_id, herald)
    assert whole_reads == [org_id]
    _same_as_the_table(db_engine, org_id, herald)
    assert whole_reads == [org_id]  # the new copy holds them


def test_a_write_that_does_not_stamp_its_change_generation_is_refused(db_engine, herald, stored, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the guard is PostgreSQL's (on SQLite a trigger beside the index cost 10 s per 1M upserted)")
    org_id = stored
    for statement in ("UPDATE customer SET tier = 'sneaky' WHERE org_id = :o AND external_id = 'c00005'",
                      "INSERT INTO customer (org_id, external_id, subscriptions, attributes, created_at, updated_at) "
                      "VALUES (:o, 'sneaky', '{}', '{}', '2026-01-01', '2026-01-01')"):
        with pytest.raises(exc.DatabaseError, match="change generation"), db_engine.begin() as conn:
            conn.execute(text(statement), {"o": org_id})
    with pytest.raises(exc.DatabaseError, match="change generation"), transaction(db_engine) as s:
        row = s.exec(text("SELECT id FROM customer WHERE org_id = :o AND external_id = 'c00005'"),  # type: ignore[call-overload]
                     params={"o": org_id}).scalar_one()
        person = s.get(Customer, row)
        assert person is not None
        person.tier = "sneaky"  # the ORM path, without stamp()
        s.add(person)
    frame = customers_frame(db_engine, org_id, herald)
    assert "sneaky" not in frame["customer.tier"].drop_nulls().to_list()


def test_a_copy_made_while_a_write_was_running_does_not_hide_it(db_engine, herald, stored, database_url,
                                                                 monkeypatch):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: a copy cannot be stored while a write is open")
    org_id = stored
    monkeypatch.setattr(customer_copy, "STORE_AT", 0)  # every read stores its frame as the copy
    with db_engine.connect() as conn:
        first = conn.execute(text("SELECT horizon FROM customer_copy WHERE org_id = :o"), {"o": org_id}).scalar_one()
    with transaction(db_engine) as s:
        upsert_customers(s, org_id, herald, _lines([{"id": "c00006", "tier": "late"}]), "jsonl")
        s.flush()
        refresh(db_engine, org_id, herald)  # another connection: the write above is not committed yet
        before = customers_frame(db_engine, org_id, herald)
        assert before.filter(pl.col("customer.id") == "c00006")["customer.tier"].to_list() == ["gold"]
        with db_engine.connect() as conn:  # the copy was stored again while the write was open
            assert conn.execute(text("SELECT horizon FROM customer_copy WHERE org_id = :o"),
                                {"o": org_id}).scalar_one() > first
    frame = _same_as_the_table(db_engine, org_id, herald)
    assert frame.filter(pl.col("customer.id") == "c00006")["customer.tier"].to_list() == ["late"]


def test_a_large_upload_makes_the_copy_after_answering(client, org, db_engine, herald):
    from service.http.routes import customers as route

    body = "id,email,tier\n" + "".join(f"u{i},u{i}@example.com,gold\n" for i in range(customer_copy.STORE_AT))
    r = client.post("/api/v1/customers/bulk", content=body.encode(), headers=org.headers(**{"Content-Type": "text/csv"}))
    assert r.status_code == 200 and r.json()["created"] == customer_copy.STORE_AT
    thread = route.REFRESHING.get(org.org_id)
    if thread is not None:
        thread.join(60)
    with db_engine.connect() as conn:
        rows = conn.execute(text("SELECT rows FROM customer_copy WHERE org_id = :o"), {"o": org.org_id}).scalar_one()
    assert rows == customer_copy.STORE_AT
    _same_as_the_table(db_engine, org.org_id, herald)
    # a small upload answers without making the copy again
    r = client.post("/api/v1/customers/bulk", content=b"id,tier\nu1,silver\n", headers=org.headers(**{"Content-Type": "text/csv"}))
    assert r.status_code == 200 and org.org_id not in route.REFRESHING


def test_a_frame_read_before_a_deletion_is_not_stored_after_it(db_engine, herald, stored):
    org_id = stored
    with db_engine.connect() as conn:
        at = customer_copy.horizon(conn, org_id)
    frame = read_customers_frame(db_engine, org_id, herald)  # holds c00007's address
    with transaction(db_engine) as s:
        assert anonymise(s, org_id, "c00007")
    customer_copy._store(db_engine, org_id, at, customer_copy.shape_of(herald), frame)
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customer_copy WHERE org_id = :o"), {"o": org_id}).scalar() == 0
    frame = _same_as_the_table(db_engine, org_id, herald)  # read whole, and this copy is stored
    assert "c00007" not in frame["customer.id"].to_list()
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT rows FROM customer_copy WHERE org_id = :o"), {"o": org_id}).scalar() == N - 1
