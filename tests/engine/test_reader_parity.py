"""The row reader (``engine.audience``) and the columnar reader (``engine.columnar.read_frame``) accept and
refuse exactly the same CSV and JSONL files: the same customers with the same attribute values, and the
same rejected lines with the same messages. Files are generated small, typed and mistyped: mixed JSON types
in one column, null items in lists, integers beyond 64 bits, ±inf and NaN, non-ASCII digits, ``1_000``,
booleans as strings, empty strings, repeated ids, unknown subscription statuses, malformed handles."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.audience import read_audience
from engine.columnar import read_frame
from engine.columnar.decisions import customer_of
from engine.errors import AudienceError
from engine.fields import build_catalogue, load_org_fields
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from plugins import DEFAULT_PLUGINS
from tests.conftest import RULES

CATALOGUE = build_catalogue(org_fields=load_org_fields(RULES / "fields.yaml"), contacts=Registry.build(
    make_plugin_manager(DEFAULT_PLUGINS, entry_points=False)).contacts.values())
COLUMNS = ["tier", "points", "lifetime_value", "dnd", "affinities", "last_purchase_date", "signup_at",
           "subscription.sms", "phone", "email", "timezone", "note"]  # note: a free attribute
TEXT = ["gold", "", " ", "1", "1.0", "1.5", "-0", "+5", " 7 ", "1_000", "\u0663", "\uff11\uff12", "1e3", "1e400",
        "inf", "-inf", "nan", "NaN", "Infinity", "9223372036854775807", "9223372036854775808",
        "-9223372036854775809", "true", "TRUE", "yes", "n", "on", "2026-05-01", "2026-5-1", "20260501",
        "\u0662\u0660\u0662\u0666-\u0660\u0665-\u0660\u0661", "2026-05-01T10:00:00+05:30", "a|b", "|", " a | b ",
        "\x1c5\x1c", "subscribed", "unsubscribed", "unsubscibed", "dnd", "+919812345678", "+1555", "0812345678",
        "asha@example.com", "asha@example", "Asia/Kolkata", "Mars/Base", 'say "hi", ok']
NATIVE = [0, 1, -7, 2**63 - 1, 2**63, -(2**63) - 1, 1.0, 1.5, 1e300, float("inf"), float("-inf"), float("nan"),
          True, False, None, ["a", "b"], [], ["a", None], [None], [1], ["a", 1], {"x": 1}]
IDS = ["c1", "c2", "c3", "c4", " c5 ", ""]


def read_both(path, **options):
    """What each reader makes of ``path``: (customers as (id, attributes), rejected lines as text), or
    ("refused", problems as text)."""
    out = []
    for read in (read_audience, read_frame):
        try:
            got = read(path, CATALOGUE, **options)
        except AudienceError as exc:
            out.append(("refused", [str(p) for p in exc.problems]))
            continue
        people = got.customers if read is read_audience else [customer_of(r) for r in got.frame.iter_rows(named=True)]
        out.append(([(c.id, c.attributes) for c in people], [str(p) for p in got.rejected]))
    return out


def rows(values):
    columns = st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=4, unique=True)
    return columns.flatmap(lambda cols: st.tuples(st.just(cols), st.lists(
        st.tuples(st.sampled_from(IDS), st.lists(values, min_size=len(cols), max_size=len(cols))),
        min_size=1, max_size=6)))


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=rows(st.sampled_from(TEXT)), keep_valid=st.booleans(), merge=st.booleans())
def test_csv_files_read_the_same_both_ways(tmp_path_factory, table, keep_valid, merge):
    cols, body = table
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *cols])
    writer.writerows([cid, *values] for cid, values in body)
    path = tmp_path_factory.mktemp("parity") / "a.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    row, columnar = read_both(path, keep_valid=keep_valid, **({"merge_duplicates": True} if merge else {}))
    assert row == columnar


def _nest(record):
    """``subscription.sms`` written as a nested object, as JSONL files usually do."""
    out = {}
    for key, value in record.items():
        head, _, leaf = key.partition(".")
        if leaf:
            out.setdefault(head, {})[leaf] = value
        else:
            out[key] = value
    return out


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=rows(st.sampled_from(TEXT) | st.sampled_from(NATIVE)), keep_valid=st.booleans(), merge=st.booleans(),
       ids=st.sampled_from(["text", "numbers"]))
def test_jsonl_files_read_the_same_both_ways(tmp_path_factory, table, keep_valid, merge, ids):
    cols, body = table
    lines = []
    for n, (cid, values) in enumerate(body):
        record = {"id": cid if ids == "text" else n % 3, **dict(zip(cols, values, strict=True))}
        lines.append(json.dumps(_nest(record)))  # inf and nan are written as Infinity and NaN
    path = tmp_path_factory.mktemp("parity") / "a.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    row, columnar = read_both(path, keep_valid=keep_valid, **({"merge_duplicates": True} if merge else {}))
    assert row == columnar


@pytest.mark.parametrize(("value", "message"), [
    ("1_000", "points: expected a number written with the digits 0-9 only, got '1_000'"),
    ("\u0663", "points: expected a number written with the digits 0-9 only, got '\u0663'"),
    ("9223372036854775808", "points: 9223372036854775808 is outside the 64-bit integer range"),
    ("inf", "points: expected a number, got 'inf'"),
    ("nan", "points: expected a number, got 'nan'"),
])
def test_ambiguous_numbers_are_refused_by_both_readers(tmp_path, value, message):
    path = tmp_path / "a.csv"
    path.write_text(f"id,points\nc1,{value}\n", encoding="utf-8")
    row, columnar = read_both(path)
    assert row == columnar and row[0] == "refused"
    assert row[1] == [f"{path}:2: {message}"]


@pytest.mark.parametrize(("record", "message"), [
    ({"id": "c1", "tier": True}, "tier: expected a string, got True"),
    ({"id": "c1", "affinities": ["a", None]}, "affinities: expected a list of strings, got ['a', None]"),
    ({"id": "c1", "points": 2**63}, "points: 9223372036854775808 is outside the 64-bit integer range"),
    ({"id": "c1", "lifetime_value": float("nan")}, "invalid JSON: NaN is not a JSON number"),
    ({"id": "c1", "note": 5}, "note: 5 is a number, but line 1 has text; an attribute holds one kind of value"),
])
def test_mixed_json_types_are_refused_by_both_readers(tmp_path, record, message):
    path = tmp_path / "a.jsonl"
    first = {"id": "c0", "tier": "gold", "affinities": ["a"], "points": 1, "lifetime_value": 1.5, "note": "x"}
    path.write_text(json.dumps(first) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    row, columnar = read_both(path)
    assert row == columnar and row[0] == "refused"
    assert row[1] == [f"{path}:2: {message}"]


def test_a_key_written_with_escapes_cannot_hide_a_mixed_column(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "c0", "tier": "gold"}\n{"id": "c1", "ti\\u0065r": true}\n', encoding="utf-8")
    row, columnar = read_both(path)
    assert row == columnar == ("refused", [f"{path}:2: tier: expected a string, got True"])
