"""Liquid templating: strict rendering, static tag analysis, property tests on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import TemplateError
from engine.templating import check_tags, render, render_content, variables


def test_strict_rendering_refuses_undefined_variables_with_their_position():
    with pytest.raises(TemplateError, match=r"'coupon' is undefined \(line 2, column 10\)"):
        render("Hi\nCode: {{ coupon.code }}", {"customer": {}})


def test_an_explicit_default_is_the_only_way_to_allow_a_missing_value():
    assert render("Hi {{ customer.first_name | default: 'there' }}", {"customer": {}}) == "Hi there"


def test_variables_are_found_statically_loop_variables_excluded():
    src = "{{ customer.first_name }} {% for a in customer.affinities %}{{ a | upcase }}{% endfor %} {{ optout }}"
    assert variables(src) == {"customer.first_name", "customer.affinities", "optout"}


def test_check_tags_reports_unknown_and_missing_required_tags():
    issues, used = check_tags({"body": "Hi {{ customer.tier }} {{ cupon.code }}"}, ["customer.*", "coupon.code"], ["optout"])
    assert [(i.path, i.code) for i in issues] == [("content.body", "unknown_tag"), ("content", "missing_required_tag")]
    assert "{{ cupon.code }}" in issues[0].message and "{{ optout }}" in issues[1].message
    assert used == {"customer.tier", "cupon.code"}


def test_syntax_errors_are_issues_at_the_field():
    issues, _ = check_tags({"buttons": [{"url": "{{ oops "}]}, ["customer.*"])
    assert issues[0].path == "content.buttons[0].url" and issues[0].code == "template_syntax"


def test_render_content_renders_nested_strings_only():
    out = render_content({"a": "{{ x }}", "b": [1, "{{ x }}!"], "c": None}, {"x": "y"})
    assert out == {"a": "y", "b": [1, "y!"], "c": None}


@given(st.text(alphabet=st.characters(blacklist_characters="{}%"), max_size=200))
def test_text_without_liquid_markup_renders_unchanged(text):
    assert render_content(text, {}) == text
    assert variables(text) == frozenset()
