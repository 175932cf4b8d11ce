"""Customers over HTTP: one and bulk upserts checked as the CLI's audience reader checks them, all-or-nothing
unless keep_valid, anonymising deletes, org isolation, body limits and content types; on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import polars as pl
import pytest

from engine.audience import read_audience
from engine.columnar.frame import read_frame
from service.storage.audience import customers_frame

CSV = "text/csv"
NDJSON = "application/x-ndjson"


def bulk(client, org, body: bytes | str, content_type: str = CSV, who: str = "marketer", **params):
    data = body.encode() if isinstance(body, str) else body
    return client.post("/api/v1/customers/bulk", content=data, params=params,
                       headers=org.headers(who, **{"Content-Type": content_type}))


def ids(client, org) -> list[str]:
    out, cursor = [], None
    while True:
        page = client.get("/api/v1/customers", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=org.headers()).json()
        out += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_one_customer_is_created_then_updated_keeping_what_was_not_sent(client, org):
    r = client.post("/api/v1/customers", json={"id": "c1", "attributes": {"tier": "gold", "points": "12",
                                                                            "email": "Ann@Example.com"}},
                    headers=org.headers())
    assert r.status_code == 201, r.text
    assert r.json()["attributes"] == {"tier": "gold", "points": 12, "email": "Ann@example.com",
                                      "handle_type.email": "address"}
    r = client.post("/api/v1/customers", json={"id": "c1", "attributes": {"tier": "silver"}}, headers=org.headers())
    assert r.status_code == 200
    got = client.get("/api/v1/customers/c1", headers=org.headers("approver")).json()
    assert got["attributes"]["tier"] == "silver" and got["attributes"]["points"] == 12


def test_one_bad_value_is_422_pointing_at_the_attribute(client, org):
    r = client.post("/api/v1/customers", json={"id": "c1", "attributes": {"points": "many"}}, headers=org.headers())
    assert r.status_code == 422
    item = r.json()["errors"][0]
    assert item["path"] == "/attributes/points" and item["code"] == "type"
    assert client.get("/api/v1/customers/c1", headers=org.headers()).status_code == 404


def test_bulk_csv_upserts_and_updates_existing_customers(client, org):
    r = bulk(client, org, "id,tier,points\nc1,gold,10\nc2,silver,5\n")
    assert r.status_code == 200, r.text
    assert r.json() | {"rejected": []} == {"received": 2, "created": 2, "updated": 0, "rejected_count": 0, "rejected": []}
    r = bulk(client, org, b'{"id": "c2", "points": 7}\n{"id": "c3", "tier": "bronze"}\n', NDJSON)
    assert (r.json()["created"], r.json()["updated"]) == (1, 1)
    c2 = client.get("/api/v1/customers/c2", headers=org.headers()).json()["attributes"]
    assert c2 == {"tier": "silver", "points": 7}
    assert ids(client, org) == ["c1", "c2", "c3"]


def test_bulk_parquet_and_multipart_file(client, org):
    buf = io.BytesIO()
    pl.DataFrame({"id": ["p1", "p2"], "points": [1, 2], "subscription.sms": ["subscribed", None]}).write_parquet(buf)
    r = bulk(client, org, buf.getvalue(), "application/vnd.apache.parquet")
    assert r.status_code == 200 and r.json()["created"] == 2, r.text
    r = client.post("/api/v1/customers/bulk", files={"file": ("more.csv", b"id,tier\np3,gold\n", "text/csv")},
                    headers=org.headers())
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    assert client.get("/api/v1/customers/p1", headers=org.headers()).json()["attributes"] == {
        "points": 1, "subscription.sms": "subscribed"}


def test_an_upload_whose_last_row_is_bad_stores_nothing(client, org):
    bulk(client, org, "id,tier\nc1,gold\n")
    r = bulk(client, org, "id,tier,subscription.sms\nc1,silver,\nc2,gold,\nc3,gold,maybe\n")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    [item] = r.json()["errors"]
    assert item["path"] == "body:4:subscription.sms" and item["code"] == "status"
    assert ids(client, org) == ["c1"]
    assert client.get("/api/v1/customers/c1", headers=org.headers()).json()["attributes"] == {"tier": "gold"}


def test_keep_valid_stores_the_good_rows_and_reports_the_bad_by_line(client, org):
    r = bulk(client, org, "id,points\nc1,1\nc2,lots\n\nc3,3\nc4,x\n", keep_valid="true")
    assert r.status_code == 200
    body = r.json()
    assert body["created"] == 2 and body["rejected_count"] == 2
    assert [e["path"] for e in body["rejected"]] == ["body:3:points", "body:6:points"]
    assert ids(client, org) == ["c1", "c3"]


def test_bad_rows_get_the_clis_messages_and_a_malformed_phone_is_kept_with_its_reason(client, org, tmp_path, herald):
    text = "id,phone,timezone\nc1,0812345678,Europe/London\nc2,+4479111,Mars/Olympus\n"
    path = tmp_path / "a.csv"
    path.write_text(text)
    cli = read_audience(path, herald.catalogue, keep_valid=True)
    r = bulk(client, org, text, keep_valid="true")
    assert [e["message"] for e in r.json()["rejected"]] == [p.message for p in cli.rejected]
    stored = client.get("/api/v1/customers/c1", headers=org.headers()).json()["attributes"]
    assert stored == dict(cli.customers[0].attributes)
    assert "international form" in stored["handle_error.phone"]


def test_the_stored_frame_is_the_frame_the_engine_reads_from_the_file(client, org, tmp_path, herald, db_engine):
    text = ("id,phone,email,tier,points,lifetime_value,subscription.sms,affinities,dnd,last_purchase_date,colour\n"
            "c1,+447911123456,a@example.com,gold,10,5,subscribed,a|b,true,2024-01-02,red\n"
            "c2,0812345678,,silver,,2.5,,,false,,\n")
    path = tmp_path / "a.csv"
    path.write_text(text)
    assert bulk(client, org, text).status_code == 200
    want = read_frame(path, herald.catalogue, channels=herald.registry.channels).frame.sort("customer.id")
    got = customers_frame(db_engine, org.org_id, herald)
    assert set(got.columns) == set(want.columns)
    assert got.select(want.columns).equals(want)


def test_a_deleted_customer_is_anonymised_unreadable_and_not_listed(client, org, db_engine):
    bulk(client, org, "id,email,tier\nc1,a@example.com,gold\nc2,b@example.com,gold\n")
    assert client.delete("/api/v1/customers/c1", headers=org.headers("approver")).status_code == 403
    assert client.delete("/api/v1/customers/c1", headers=org.headers()).status_code == 204
    assert client.get("/api/v1/customers/c1", headers=org.headers()).status_code == 404
    assert client.delete("/api/v1/customers/c1", headers=org.headers()).status_code == 404
    assert ids(client, org) == ["c2"]
    from sqlmodel import Session, select

    from service.storage.tables import Customer

    with Session(db_engine) as s:
        row = s.exec(select(Customer).where(Customer.org_id == org.org_id, Customer.external_id == "c1")).one()
        assert row.deleted_at is not None and row.email is None and row.tier is None and row.attributes == {}


def test_another_org_cannot_read_list_or_delete_my_customers(client, org, other_org):
    bulk(client, org, "id,tier\nmine,gold\n")
    assert client.get("/api/v1/customers/mine", headers=other_org.headers()).status_code == 404
    assert client.delete("/api/v1/customers/mine", headers=other_org.headers()).status_code == 404
    assert client.get("/api/v1/customers", headers=other_org.headers()).json()["items"] == []
    r = bulk(client, other_org, "id,tier\nmine,silver\n")
    assert r.json()["created"] == 1
    assert client.get("/api/v1/customers/mine", headers=org.headers()).json()["attributes"] == {"tier": "gold"}


@pytest.mark.parametrize("multipart", [False, True])
def test_an_oversized_upload_is_413_and_stores_nothing(client, org, multipart):
    big = "id,tier\n" + "".join(f"c{i},gold\n" for i in range(250_000))
    assert len(big) > 2 * 1024 * 1024
    if multipart:
        r = client.post("/api/v1/customers/bulk", files={"file": ("big.csv", big.encode(), "text/csv")},
                        headers=org.headers())
    else:
        r = bulk(client, org, big)
    assert r.status_code == 413
    assert client.get("/api/v1/customers", headers=org.headers()).json()["items"] == []


def test_an_unsupported_content_type_is_415(client, org):
    r = bulk(client, org, "<customers/>", "application/xml")
    assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")
    r = client.post("/api/v1/customers/bulk", files={"file": ("a.xlsx", b"PK..", "application/vnd.ms-excel")},
                    headers=org.headers())
    assert r.status_code == 415


def test_readers_cannot_write_customers(client, org):
    assert bulk(client, org, "id\nc1\n", who="approver").status_code == 403
    assert client.post("/api/v1/customers", json={"id": "c1"}, headers=org.headers("service")).status_code == 403
