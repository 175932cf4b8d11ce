"""Audience files: typed by the field catalogue, contacts normalised, bad rows reported by line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audience import read_audience
from engine.errors import AudienceError
from tests.conftest import EXAMPLES

HEADER = "id,tier,points,affinities,dnd,timezone,phone,email,subscription.sms,last_purchase_date\n"


def write(tmp_path, text, name="a.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_rows_are_typed_and_contacts_normalised(tmp_path, catalogue):
    path = write(tmp_path, "\ufeff" + HEADER + "c1,gold,120,shoes|bags,yes,Asia/Kolkata,+91 98123 45678,Asha@Example.COM,unsubscribed,2026-05-01\n"
                 "c2,,,,,,,,,\n")
    c1, c2 = read_audience(path, catalogue).customers
    assert c1.id == "c1" and c1.attributes == {
        "tier": "gold", "points": 120, "affinities": ["shoes", "bags"], "dnd": True, "timezone": "Asia/Kolkata",
        "phone": "+919812345678", "handle_type.phone": "mobile", "email": "Asha@example.com", "handle_type.email": "address",
        "subscription.sms": "unsubscribed", "last_purchase_date": "2026-05-01"}
    assert c2.attributes == {}


@pytest.mark.parametrize(("row", "expected"), [
    ("c1,gold,lots,,,,,,,", "a.csv:2: points: expected a number, got 'lots'"),
    ("c1,gold,1,,maybe,,,,,", "a.csv:2: dnd: expected true or false, got 'maybe'"),
    ("c1,gold,1,,,Mars/Base,,,,", "a.csv:2: timezone: unknown IANA time zone 'Mars/Base'"),
    ("c1,gold,1,,,,,,unsubscibed,", "a.csv:2: subscription.sms: unknown status 'unsubscibed'; the statuses are "
     "valid, subscribed, unable_to_verify, soft_bounced, hard_bounced, contact_unavailable, unsubscribed, invalid"),
    ("c1,gold,1,,,,,,dnd,", "a.csv:2: subscription.sms: unknown status 'dnd'"),
    ("c1,gold,1,,,,,,,31/12/2026", "a.csv:2: last_purchase_date: expected a date YYYY-MM-DD"),
    (",gold,1,,,,,,,", "a.csv:2: id: the id is missing"),
    ("c1,gold", "a.csv:2: expected 10 columns, found 2"),
])
def test_bad_rows_are_reported_with_their_line_and_nothing_is_read(tmp_path, catalogue, row, expected):
    path = write(tmp_path, HEADER + row + "\n")
    with pytest.raises(AudienceError) as info:
        read_audience(path, catalogue)
    (problem,) = info.value.problems
    assert str(problem).replace(str(tmp_path) + "/", "").startswith(expected)


def test_keep_valid_skips_bad_rows_and_reports_them(tmp_path, catalogue):
    path = write(tmp_path, HEADER + "c1,gold,1,,,,,,,\nc2,gold,x,,,,,,,\n\nc3,silver,2,,,,,,,\n")
    read = read_audience(path, catalogue, keep_valid=True)
    assert [c.id for c in read.customers] == ["c1", "c3"]
    assert [p.line for p in read.rejected] == [3]


def test_quoted_multiline_cells_keep_line_numbers_right(tmp_path, catalogue):
    path = write(tmp_path, 'id,tier,points\nc1,"gold\nplus",1\nc2,silver,bad\n')
    with pytest.raises(AudienceError) as info:
        read_audience(path, catalogue)
    assert info.value.problems[0].line == 4


def test_headers_need_an_id_column_and_no_duplicates(tmp_path, catalogue):
    with pytest.raises(AudienceError, match="no id column"):
        read_audience(write(tmp_path, "tier\ngold\n"), catalogue)
    with pytest.raises(AudienceError, match="duplicate columns: tier"):
        read_audience(write(tmp_path, "id,tier,tier\n1,a,b\n"), catalogue)


def test_non_utf8_files_are_rejected_clearly(tmp_path, catalogue):
    with pytest.raises(AudienceError) as info:
        read_audience(write(tmp_path, "id,city\nc1,Zürich\n", encoding="latin-1"), catalogue)
    (problem,) = info.value.problems
    assert problem.line == 2 and "not UTF-8 text" in problem.message


def test_jsonl_nested_objects_become_dotted_attributes(tmp_path, catalogue):
    path = write(tmp_path, '{"id": "c1", "tier": "gold", "subscription": {"sms": "subscribed"}, "affinities": ["a"]}\n'
                 '{"id": "c2", "points": "x"}\nnot json\n', name="a.jsonl")
    with pytest.raises(AudienceError) as info:
        read_audience(path, catalogue)
    assert [(p.line, p.code) for p in info.value.problems] == [(2, "type"), (3, "json")]
    good = read_audience(path, catalogue, keep_valid=True).customers
    assert good[0].attributes == {"tier": "gold", "subscription.sms": "subscribed", "affinities": ["a"]}


def test_the_bundled_sample_audience_reads_cleanly(catalogue):
    assert len(read_audience(EXAMPLES / "audience.csv", catalogue).customers) == 200


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.text(alphabet="abcxyz", min_size=1, max_size=5),
                          st.text(alphabet='ab ,"\n', max_size=8)), min_size=1, max_size=10, unique_by=lambda r: r[0]))
def test_any_csv_the_csv_module_writes_reads_back(tmp_path_factory, rows):
    import csv
    import io

    from engine.fields import build_catalogue, load_org_fields
    from tests.conftest import RULES

    catalogue = build_catalogue(org_fields=load_org_fields(RULES / "fields.yaml"))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "city"])
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("csv") / "a.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    customers = read_audience(path, catalogue).customers
    assert [(c.id, c.attributes.get("city", "")) for c in customers] == [(i, city) for i, city in rows]


# --- one reading, whatever the path (issue 7) ---------------------------------------------------------

def both_readers(path, catalogue, **options):
    """(customers, rejected) from the row reader and from the columnar reader, or the AudienceError of each."""
    from engine.columnar import read_frame
    from engine.columnar.decisions import customer_of

    out = []
    for read in (read_audience, read_frame):
        try:
            got = read(path, catalogue, **options)
        except AudienceError as exc:
            out.append(("refused", [str(p) for p in exc.problems]))
            continue
        people = got.customers if read is read_audience else [customer_of(r) for r in got.frame.iter_rows(named=True)]
        out.append(([(c.id, dict(c.attributes)) for c in people], [str(p) for p in got.rejected]))
    return out


def test_repeated_ids_are_refused_with_every_line_in_both_readers(tmp_path, catalogue):
    path = write(tmp_path, "id,tier\nc1,gold\nc42,silver\nc1,\nc3,x\nc42,gold\nc1,bronze\n", name="audience.csv")
    row, columnar = both_readers(path, catalogue)
    assert row == columnar
    status, problems = row
    assert status == "refused"
    assert [p.replace(str(tmp_path) + "/", "") for p in problems] == [
        "audience.csv:4: id 'c1' also on line 2", "audience.csv:6: id 'c42' also on line 3",
        "audience.csv:7: id 'c1' also on line 2"]


def test_keep_valid_keeps_the_first_row_of_a_repeated_id(tmp_path, catalogue):
    path = write(tmp_path, "id,tier\nc1,gold\nc2,silver\nc1,bronze\n")
    row, columnar = both_readers(path, catalogue, keep_valid=True)
    assert row == columnar
    customers, rejected = row
    assert customers == [("c1", {"tier": "gold"}), ("c2", {"tier": "silver"})]
    assert [p.rsplit(":", 2)[1:] for p in rejected] == [["4", " id 'c1' also on line 2"]]


def test_merge_duplicates_later_non_empty_values_win(tmp_path, catalogue):
    path = write(tmp_path, "id,tier,points,phone\nc1,gold,10,+1555\nc2,silver,,\nc1,,20,+91 98123 45678\n"
                 "c2,bronze,,12345\n")
    row, columnar = both_readers(path, catalogue, merge_duplicates=True)
    assert row == columnar
    customers, rejected = row
    assert rejected == []
    assert customers == [
        ("c1", {"tier": "gold", "points": 20, "phone": "+919812345678",  # the later valid phone clears the mark
                "handle_type.phone": "mobile"}),
        ("c2", {"tier": "bronze", "phone": "12345",
                "handle_error.phone": "phone '12345' is not in international form (+ and country code)"})]


def test_merge_duplicates_in_jsonl_and_parquet(tmp_path, catalogue):
    import polars as pl

    from engine.columnar import read_frame
    from engine.columnar.decisions import customer_of

    lines = ['{"id": "c1", "tier": "gold", "affinities": ["a"]}', '{"id": "c2"}', '{"id": "c1", "tier": null, "points": 3}']
    path = write(tmp_path, "\n".join(lines) + "\n", name="a.jsonl")
    row, columnar = both_readers(path, catalogue, merge_duplicates=True)
    assert row == columnar and row[0] == [("c1", {"tier": "gold", "affinities": ["a"], "points": 3}), ("c2", {})]
    parquet = tmp_path / "a.parquet"
    pl.DataFrame({"id": ["c1", "c2", "c1"], "tier": ["gold", None, None], "points": [None, None, 3]}).write_parquet(parquet)
    got = read_frame(parquet, catalogue, merge_duplicates=True).frame
    people = [customer_of(r) for r in got.iter_rows(named=True)]
    assert [(c.id, c.attributes.get("tier"), c.attributes.get("points")) for c in people] == [("c1", "gold", 3), ("c2", None, None)]


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("phone", "0812345678", "phone '0812345678' is not in international form (+ and country code)"),
    ("phone", "+1555", "phone '+1555' is not a valid number"),
    ("phone", "+999 123", "phone '+999 123' has no known country code after the +"),
    ("whatsapp", "+1555", "whatsapp '+1555' is not a valid number"),
    ("email", "asha.example.com", "email 'asha.example.com' is not a valid address: it has no @"),
    ("email", "asha@example", "email 'asha@example' is not a valid address: the domain 'example' has no dot"),
])
def test_a_malformed_handle_is_kept_with_our_own_reason_not_the_library_text(tmp_path, catalogue, column, value, reason):
    path = write(tmp_path, f"id,tier,{column}\nc1,gold,{value}\n")
    row, columnar = both_readers(path, catalogue)
    assert row == columnar
    assert row == ([("c1", {"tier": "gold", column: value, f"handle_error.{column}": reason})], [])
    assert "((" not in reason and f"{column}: {column}" not in reason


def test_a_handle_error_column_in_the_file_is_refused(tmp_path, catalogue):
    path = write(tmp_path, "id,handle_error.phone\nc1,fine really\n")
    row, columnar = both_readers(path, catalogue)
    assert row == columnar and row[0] == "refused"
    assert row[1][0].endswith("a.csv:2: handle_error.phone: the handle_error.* and handle_type.* attributes are "
                              "Herald's own (why a handle is malformed, a phone number's line type); rename the column")
