"""Hostile data files are refused with the place at fault: aliases, size, nesting; never a RecursionError."""

from __future__ import annotations

import pytest

from engine.audience import read_audience
from engine.columnar.frame import read_frame
from engine.errors import MessageFileError, RuleFileError, ValidationFailed
from engine.fields import load_org_fields
from engine.rulefiles import load_ruleset_data
from engine.runtime import load_settings
from engine.sourcefile import MAX_DEPTH, parse_text, read_source

LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]
"""


def refusal(call, *args, **kw) -> str:
    with pytest.raises(ValidationFailed) as info:
        call(*args, **kw)
    (problem,) = info.value.problems
    return str(problem)


def test_yaml_aliases_are_refused_with_line_and_column():
    assert refusal(parse_text, "x: 1\ny: *x\n", "r.yaml").startswith("r.yaml:2:4: YAML aliases are not allowed (*x)")
    assert refusal(parse_text, LAUGHS, "r.yaml").startswith("r.yaml:1:4: YAML aliases are not allowed (anchor &a)")


@pytest.mark.parametrize("name", ["rules.yaml", "message.yaml", "settings.yaml", "fields.yaml"])
def test_every_kind_of_file_refuses_aliases(tmp_path, name, herald, monkeypatch):
    path = tmp_path / name
    path.write_text("base: &b {type: string}\ncustomer: {a: *b}\nplugins: {}\n")
    loaders = {"rules.yaml": herald.load_ruleset, "message.yaml": herald.load_message, "settings.yaml": load_settings,
               "fields.yaml": load_org_fields}
    with pytest.raises((ValidationFailed, RuleFileError, MessageFileError)) as info:
        loaders[name](path)
    assert f"{path}:1:7: YAML aliases are not allowed" in str(info.value)


def test_settings_named_by_the_environment_go_through_the_guarded_reader(tmp_path, monkeypatch):
    path = tmp_path / "settings.yaml"
    path.write_text("plugins: &p {}\n")
    monkeypatch.setenv("HERALD_SETTINGS", str(path))
    assert "YAML aliases are not allowed" in refusal(load_settings)


def test_files_over_the_size_limit_are_refused_with_size_and_limit(tmp_path, monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text("ruleset: x\n" + "#" * 2000 + "\n")
    monkeypatch.setenv("HERALD_MAX_FILE_BYTES", "1000")
    assert refusal(read_source, path) == f"{path}: the file is 2,012 bytes, over the limit of 1,000 bytes " \
                                         "(HERALD_MAX_FILE_BYTES)"
    assert "over the limit of 1,000 bytes" in refusal(parse_text, path.read_text(), "api.yaml")
    monkeypatch.delenv("HERALD_MAX_FILE_BYTES")
    assert read_source(path).data == {"ruleset": "x"}


def test_the_default_size_limit_is_one_mebibyte(tmp_path, monkeypatch):
    monkeypatch.delenv("HERALD_MAX_FILE_BYTES", raising=False)
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" + "#" * (1024 * 1024) + "\n")
    assert "over the limit of 1,048,576 bytes" in refusal(read_source, path)


def test_a_bad_size_limit_setting_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HERALD_MAX_FILE_BYTES", "lots")
    assert "HERALD_MAX_FILE_BYTES must be a positive number of bytes, not 'lots'" in refusal(parse_text, "a: 1", "x")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_yaml_is_refused_not_a_recursion_error(depth):
    text = "a: " + "[" * depth + "]" * depth
    msg = refusal(parse_text, text, "r.yaml")
    assert msg.startswith("r.yaml:1:") and ("nested deeper than the limit of 64 levels" in msg
                                            or "exceeded maximum nesting depth" in msg)


def test_nesting_at_the_limit_is_fine():
    assert parse_text("[" * MAX_DEPTH + "]" * MAX_DEPTH, "r.yaml").data is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_json_is_refused_with_the_place_even_on_the_json_fallback(depth):
    # a tab before the value: not YAML, valid JSON, so the JSON parser (which recurses) reads it
    text = '{"a":\t' + "[" * depth + "]" * depth + "}"
    assert refusal(parse_text, text, "r.json") == "r.json:1:70: nested deeper than the limit of 64 levels"


def test_deep_api_data_is_refused(kinds):
    data: dict = {}
    node = data
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(RuleFileError, match="nested deeper than the limit of 64 levels"):
        load_ruleset_data(data, kinds=kinds)


def test_a_folder_given_as_a_file_is_a_clear_error(tmp_path):
    assert refusal(read_source, tmp_path) == f"{tmp_path}: is a folder; give the path of a YAML or JSON file"


@pytest.mark.parametrize("depth", [MAX_DEPTH, 1000, 100_000])
def test_deeply_nested_audience_jsonl_is_a_bad_row_in_both_readers(tmp_path, catalogue, depth):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "1", "x": ' + "[" * depth + "]" * depth + '}\n{"id": "2"}\n'
                    '{"id": "3", "first_name": "' + "[" * 100 + '"}\n')
    rows = read_audience(path, catalogue, keep_valid=True)
    frame = read_frame(path, catalogue, keep_valid=True)
    expected = [f"{path}:1:81: nested deeper than the limit of 64 levels"]
    assert [str(p) for p in rows.rejected] == expected
    assert [str(p) for p in frame.rejected] == expected
    assert [c.id for c in rows.customers] == ["2", "3"] == frame.frame["customer.id"].to_list()
