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
        "phone": "+919812345678", "email": "Asha@example.com", "subscription.sms": "unsubscribed",
        "last_purchase_date": "2026-05-01"}
    assert c2.attributes == {}


@pytest.mark.parametrize(("row", "expected"), [
    ("c1,gold,lots,,,,,,,", "a.csv:2: points: points: expected a number, got 'lots'"),
    ("c1,gold,1,,maybe,,,,,", "a.csv:2: dnd: dnd: expected true or false, got 'maybe'"),
    ("c1,gold,1,,,Mars/Base,,,,", "a.csv:2: timezone: timezone: unknown IANA time zone 'Mars/Base'"),
    ("c1,gold,1,,,,12345,,,", "a.csv:2: phone: phone: not a phone number in international form"),
    ("c1,gold,1,,,,,not-an-email,,", "a.csv:2: email: email: "),
    ("c1,gold,1,,,,,,,31/12/2026", "a.csv:2: last_purchase_date: last_purchase_date: expected a date YYYY-MM-DD"),
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
