"""Audiences read as columns equal the per-row reader: values, normalised contacts, and bad rows."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audience import normalise_email, read_audience
from engine.columnar import read_frame
from engine.columnar.contacts import normalise_emails
from engine.columnar.decisions import customer_of
from engine.errors import AudienceError

from ..conftest import EXAMPLES


def _customers(frame):
    return [customer_of(r) for r in frame.iter_rows(named=True)]


def test_csv_jsonl_parquet_equal_the_row_reader(herald, tmp_path):
    want = read_audience(EXAMPLES / "audience.csv", herald.catalogue).customers
    got = read_frame(EXAMPLES / "audience.csv", herald.catalogue).frame
    assert _customers(got) == want
    jsonl = tmp_path / "a.jsonl"
    own = ("handle_error.", "handle_type.")  # the reader's own attributes are not input
    jsonl.write_text("".join(json.dumps({"id": c.id, **{k: v for k, v in c.attributes.items() if not k.startswith(own)}})
                             + "\n" for c in want))
    assert _customers(read_frame(jsonl, herald.catalogue).frame) == want
    parquet = tmp_path / "a.parquet"
    got.drop([c for c in got.columns if c.startswith(tuple(f"customer.{o}" for o in own))]).write_parquet(parquet)
    assert _customers(read_frame(parquet, herald.catalogue).frame) == want


def test_bad_rows_are_reported_with_their_lines(herald, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,points,phone,timezone\nc1,12,+919881924865,Asia/Tokyo\n\nc2,many,,\nc3,1,12345,\n,4,,\n"
                    "c5,2,,Mars/Base\n")
    with pytest.raises(AudienceError) as exc:
        read_frame(path, herald.catalogue)
    want = read_audience(path, herald.catalogue, keep_valid=True).rejected
    assert [(p.line, p.path) for p in exc.value.problems] == [(4, "points"), (6, "id"), (7, "timezone")]
    assert list(exc.value.problems) == want
    kept = read_frame(path, herald.catalogue, keep_valid=True)
    assert kept.frame.get_column("customer.id").to_list() == ["c1", "c3"] and kept.rejected == want
    # a malformed phone is not a bad row: kept as read, with the reason
    assert kept.frame.get_column("customer.handle_error.phone").to_list() == [
        None, "phone '12345' is not in international form (+ and country code)"]


def test_parquet_bad_rows_report_row_numbers(herald, tmp_path):
    path = tmp_path / "bad.parquet"
    pl.DataFrame({"id": ["a", "b", "c", "a"], "phone": ["+919881924865", "nope", None, None],
                  "subscription.sms": [None, None, "unsubscibed", None]}).write_parquet(path)
    with pytest.raises(AudienceError) as exc:
        read_frame(path, herald.catalogue)
    assert [(p.line, p.path, p.code) for p in exc.value.problems] == [(3, "subscription.sms", "status"),
                                                                      (4, "", "duplicate_id")]
    assert str(exc.value.problems[1]).endswith("bad.parquet:4: id 'a' also on line 1")
    kept = read_frame(path, herald.catalogue, keep_valid=True)
    assert kept.frame.get_column("customer.id").to_list() == ["a", "b"]
    assert kept.frame.get_column("customer.handle_error.phone").to_list() == [None, "phone 'nope' is not in international form (+ and country code)"]


LOCAL = st.text(alphabet="abcXYZ019._+-\"!é ", min_size=1, max_size=12)
DOMAIN = st.sampled_from(["example.com", "EXAMPLE.org", "localhost", "x.test", "a..b", "mail.co.uk", "xn--bcher-kva.ch",
                          "-bad.com", "1.2.3.4", "b\u00fccher.de"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(lambda a, b: f"{a}@{b}", LOCAL, DOMAIN) | st.text(max_size=8), min_size=1, max_size=10))
def test_email_fast_path_equals_email_validator(addresses):
    good, bad = normalise_emails(pl.Series("e", addresses, dtype=pl.String))
    for text, g, b in zip(addresses, good.to_list(), bad.to_list(), strict=True):
        try:
            assert (g, b) == (normalise_email(text), None)
        except ValueError as exc:
            assert (g, b) == (None, str(exc))


def test_parquet_handle_error_columns_are_refused_where_set(herald, tmp_path):
    path = tmp_path / "a.parquet"
    pl.DataFrame({"id": ["a", "b"], "phone": ["+1555", None],
                  "handle_error.phone": [None, "made up"]}).write_parquet(path)
    with pytest.raises(AudienceError) as exc:
        read_frame(path, herald.catalogue)
    assert [(p.line, p.path, p.code) for p in exc.value.problems] == [(2, "handle_error.phone", "reserved")]
    kept = read_frame(path, herald.catalogue, keep_valid=True).frame
    assert _customers(kept)[0].attributes == {"phone": "+1555",
                                             "handle_error.phone": "phone '+1555' is not a valid number"}


def test_repeated_ids_are_found_exactly_even_when_hashes_collide(monkeypatch):
    from engine.columnar.frame import has_repeats

    assert not has_repeats(pl.Series(["a", "b", "c", None]))
    assert has_repeats(pl.Series(["a", "b", "a"]))
    assert has_repeats(pl.Series(["a", None, None]))  # two missing ids are a repeat, as is_duplicated says
    monkeypatch.setattr(pl.Series, "hash", lambda self, *a, **k: pl.Series([0] * self.len(), dtype=pl.UInt64))
    assert not has_repeats(pl.Series(["a", "b", "c"]))  # equal hashes: the values decide
    assert has_repeats(pl.Series(["a", "b", "b"]))
