"""Values YAML cannot build (an impossible date, a 5,000-digit number) and tags that build other types than
Herald's data (``!!binary``, ``!!set``, ``!!python/...``, local tags) are refused with line and column."""

from __future__ import annotations

import pytest

from engine.errors import ValidationFailed
from engine.sourcefile import parse_text


def refusal(text: str, file: str = "m.yaml") -> str:
    with pytest.raises(ValidationFailed) as info:
        parse_text(text, file)
    (problem,) = info.value.problems
    assert str(info.value).startswith(f"{file}: ")
    return str(problem)


def test_an_impossible_date_is_a_clear_error_at_its_place():
    text = "message:\n  campaign: {id: c, starts: 2026-13-01}\n"
    assert refusal(text) == "m.yaml:2:29: not a valid date: 2026-13-01 (month must be in 1..12); " \
                            "write YYYY-MM-DD, or quote the value if it is text"


def test_an_impossible_time_of_day_is_a_clear_error():
    assert refusal("schedule:\n  at: 2026-07-04 25:00:00+00:00\n").startswith(
        "m.yaml:2:7: not a valid date-time: 2026-07-04 25:00:00+00:00 (hour must be in 0..23)")


def test_an_impossible_date_in_a_json_file_is_the_same_error():
    assert refusal('{"starts": 2026-02-30}', "m.json").startswith("m.json:1:12: not a valid date: 2026-02-30")


def test_an_integer_too_long_to_read_is_refused_and_large_ones_are_fine():
    assert parse_text("n: " + "9" * 400 + "\n", "m.yaml").data["n"] == int("9" * 400)
    assert refusal("n: " + "9" * 5000 + "\n").startswith("m.yaml:1:4: not a valid number: 99999")


def test_valid_dates_and_explicit_standard_tags_still_work():
    data = parse_text("a: 2026-02-28\nb: !!str 2026-13-01\nc: !!int '7'\ne: !!float 1\n", "m.yaml").data
    assert str(data["a"]) == "2026-02-28" and data["b"] == "2026-13-01" and data["c"] == 7
    assert data["e"] == 1.0


@pytest.mark.parametrize("text, tag", [
    ("x: !!binary aGVsbG8=\n", "!!binary"),
    ("x: !!set {a, b}\n", "!!set"),
    ("x: !!omap [a: 1]\n", "!!omap"),
    ("x: !!python/object:os.system {}\n", "!!python/object:os.system"),
    ("x: !!python/name:os.system\n", "!!python/name:os.system"),
    ("x: !custom 1\n", "!custom"),
])
def test_tags_that_build_other_types_are_refused(text, tag):
    assert refusal(text) == f"m.yaml:1:4: the YAML tag {tag} is not allowed; write plain text, numbers, " \
                            "true/false, lists and mappings"
