"""Stored customers read back as the engine's frame: the JSON columns parsed with the types the catalogue and
the registry give their keys (one pass) are exactly what inferring the types over every row gives; anything
the known types do not cover falls back to inference; the frame is the audience reader's, on SQLite and
PostgreSQL."""

from __future__ import annotations

import polars as pl
import pytest

from engine.columnar.frame import read_frame
from service.storage.customer_columns import _decoded, _decoded_as, _keys_in, known_attributes
from service.storage.customer_copy import customers_frame

KNOWN = {"tier": pl.String(), "points": pl.Int64(), "lifetime_value": pl.Float64(), "affinities": pl.List(pl.String()),
         "blocked": pl.Boolean(), "handle_type.phone": pl.String()}


def _inferred(texts: list[str]) -> pl.DataFrame:
    """The general way: types inferred over every row, then cast to the known types (as customers_frame does)."""
    frame = pl.DataFrame([pl.Series("n", range(len(texts))), *_decoded(pl.Series(texts), "customer.")]).drop("n")
    return frame.with_columns([pl.col(c).cast(KNOWN[c.removeprefix("customer.")]) for c in frame.columns])


def _typed(texts: list[str]) -> pl.DataFrame | None:
    cols = _decoded_as(pl.Series(texts), KNOWN, "customer.")
    return None if cols is None else pl.DataFrame([pl.Series("n", range(len(texts))), *cols]).drop("n")


@pytest.mark.parametrize("texts", [
    # SQLite's minified JSON: missing keys, integers in a number field, empty objects, lists (empty ones too)
    ['{"tier":"gold","points":10,"lifetime_value":5,"affinities":["a","b"]}', "{}",
     '{"points":7,"blocked":true,"affinities":[]}', '{"lifetime_value":2.5,"handle_type.phone":"mobile"}'],
    # PostgreSQL's jsonb spacing, escapes, non-ASCII text, a key holding null
    ['{"tier": "g\\"o,\\"ld\\u00e9", "points": -3}', '{"tier": null, "blocked": false}', '{"tier": "über, \\"x\\": 1"}'],
    # no keys at all
    ["{}", "{}"],
])
def test_typed_parse_equals_inferring_over_every_row(texts):
    got, want = _typed(texts), _inferred(texts)
    assert got is not None
    assert sorted(got.columns) == sorted(c for c in want.columns if want.get_column(c).null_count() < want.height)
    for name in got.columns:
        assert got.get_column(name).equals(want.get_column(name), check_dtypes=True), name


@pytest.mark.parametrize("texts", [
    ['{"tier":"gold"}', '{"colour":"red"}'],            # a free attribute: not a known key
    ['{"points":"many"}'],                               # a value the known type cannot hold
    ['{"points":1.5}'],                                  # a fraction in an integer field
    ['{"tier":"gold",\n"points":1}'],                    # a line break in the text
    ['{"affinities":[{"colour":"red"}]}'],               # a nested object
    ['{"ti\\u0065r":"gold"}'],                           # a key written with an escape
])
def test_anything_the_known_types_do_not_cover_falls_back_to_inference(texts):
    assert _typed(texts) is None


def test_keys_are_found_without_parsing_and_never_inside_strings():
    texts = pl.Series(['{"a":1,"b":"x,\\"c\\":2"}', '{ "d" : [1, 2], "e": {"f": ","} }', "{}"])
    assert _keys_in(texts) == {"a", "b", "d", "e", "f"}


def _store(client, org, text: str) -> None:
    r = client.post("/api/v1/customers/bulk", content=text.encode(), headers=org.headers(**{"Content-Type": "text/csv"}))
    assert r.status_code == 200, r.text


def test_known_attributes_cover_the_catalogue_and_the_contact_marks(herald):
    known = known_attributes(herald)
    assert known["points"] == pl.Int64 and known["affinities"] == pl.List(pl.String)
    assert known["handle_error.phone"] == pl.String and known["handle_type.email"] == pl.String
    assert known["blocked"] == pl.Boolean


def test_the_stored_frame_without_free_attributes_is_the_readers_frame(client, org, tmp_path, herald, db_engine):
    text = ("id,phone,email,tier,points,lifetime_value,subscription.sms,subscription.email,affinities,dnd,"
            "last_purchase_date,fraud_score,blocked\n"
            "c2,+447911123456,a@example.com,gold,10,5,subscribed,,a|b,true,2024-01-02,0.5,false\n"
            "c1,0812345678,not-an-address,silver,,2.5,,unsubscribed,,false,,,true\n"
            "c3,,,,,,,,,,,,\n")
    path = tmp_path / "a.csv"
    path.write_text(text)
    _store(client, org, text)
    _store(client, org, "id,tier\nc9,gold\n")
    assert client.delete("/api/v1/customers/c9", headers=org.headers()).status_code == 204
    want = read_frame(path, herald.catalogue, channels=herald.registry.channels).frame.sort("customer.id")
    got = customers_frame(db_engine, org.org_id, herald)
    assert got.get_column("customer.id").to_list() == ["c1", "c2", "c3"]
    assert set(got.columns) == set(want.columns)
    assert got.select(want.columns).equals(want)
    some = customers_frame(db_engine, org.org_id, herald, ["c3", "c2", "nobody", "c9"])
    part = want.filter(pl.col("customer.id").is_in(["c2", "c3"]))
    assert some.equals(part.select(some.columns))
    # only c1 has handle_error marks: a key no chosen customer holds is no column (complete() adds the rest)
    assert set(part.columns) - set(some.columns) == {"customer.handle_error.phone", "customer.handle_error.email"}


def test_a_contact_sent_again_drops_only_its_own_handle_marks(client, org):
    _store(client, org, "id,phone,email,tier\nc1,0812345678,not-an-address,gold\n")
    first = client.get("/api/v1/customers/c1", headers=org.headers()).json()["attributes"]
    assert "handle_error.phone" in first and "handle_error.email" in first
    _store(client, org, "id,phone\nc1,+447911123456\n")
    again = client.get("/api/v1/customers/c1", headers=org.headers()).json()["attributes"]
    assert "handle_error.phone" not in again and again["handle_type.phone"] == "mobile"
    assert again["handle_error.email"] == first["handle_error.email"] and again["tier"] == "gold"
    _store(client, org, "id,email,phone\nc1,ann@example.com,\n")
    last = client.get("/api/v1/customers/c1", headers=org.headers()).json()["attributes"]
    assert "handle_error.email" not in last and last["handle_type.email"] == "address"
    assert last["handle_type.phone"] == "mobile" and last["phone"] == "+447911123456"


def test_non_ascii_attributes_are_stored_as_valid_json_and_read_back(client, org, db_engine, herald):
    # a bulk upsert builds each row's JSON in polars; a value with multi-byte characters once cut it wrongly
    body = ('{"id": "c1", "first_name": "Zoë 😀", "colour": "grün", "tier": "gold"}\n'
            '{"id": "c2", "first_name": "Ann", "colour": "red"}\n').encode()
    r = client.post("/api/v1/customers/bulk", content=body, headers=org.headers(**{"Content-Type": "application/x-ndjson"}))
    assert r.status_code == 200, r.text
    got = client.get("/api/v1/customers/c1", headers=org.headers()).json()["attributes"]
    assert got == {"first_name": "Zoë 😀", "colour": "grün", "tier": "gold"}
    frame = customers_frame(db_engine, org.org_id, herald)
    assert frame.get_column("customer.first_name").to_list() == ["Zoë 😀", "Ann"]
    assert frame.get_column("customer.colour").to_list() == ["grün", "red"]  # a free attribute: inferred
