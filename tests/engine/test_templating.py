"""Liquid templating: strict rendering, static tag analysis, property tests on arbitrary text."""

from __future__ import annotations

import html as html_lib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import TemplateError
from engine.templating import check_tags, render, render_content, tag_outputs, variables


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
    assert "did you mean {{ coupon.code }}" in issues[0].message
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


def test_required_tags_are_checked_per_field_when_the_channel_names_them():
    content = {"subject": "{{ u }}", "html": "<a href='{{ u }}'>x</a>", "text": "bye"}
    issues, _ = check_tags(content, ["u"], ["u"], required_in=("html", "text"))
    assert [(i.path, i.code) for i in issues] == [("content.text", "missing_required_tag")]


def test_a_required_tag_is_clean_only_as_a_plain_top_level_output():
    assert tag_outputs("a {{ optout }} b {% echo optout %}", "optout") == (2, [])
    clean, bad = tag_outputs("{% if x %}{{ optout }}{% endif %}{{ optout }}", "optout")
    assert clean == 1 and [c for c, _ in bad] == ["conditional_required_tag"]
    assert tag_outputs("{% raw %}{{ optout }}{% endraw %}", "optout") == (0, [])  # raw text is not the tag
    assert [c for c, _ in tag_outputs("{% for optout in xs %}{% endfor %}{{ optout }}", "optout")[1]] == [
        "rebound_required_tag"]
    assert [c for c, _ in tag_outputs("{{ x[optout] }}", "optout")[1]] == ["filtered_required_tag"]


def test_unknown_and_unsafe_filters_and_file_tags_are_issues_not_render_errors():
    issues, _ = check_tags({"body": "{{ name | frobnicate }}\n{{ name | safe }} {% include 'x' %}"}, ["name"])
    assert [(i.code, i.message.split("(")[-1]) for i in issues] == [
        ("unknown_filter", "line 1, column 11)"), ("unsafe_filter", "line 2, column 11)"),
        ("unsupported_tag", "line 2, column 22)")]


def test_html_rendering_escapes_values_and_keeps_the_templates_markup():
    out = render("<p class='x'>{{ name }} {{ '<b>' }}{{ name | append: '<br>' }}</p>", {"name": "<i>&"}, html=True)
    assert out == "<p class='x'>&lt;i&gt;&amp; <b>&lt;i&gt;&amp;<br></p>"
    assert render_content({"html": "{{ n }}", "text": "{{ n }}"}, {"n": "<i>"}, html=("html",)) == {
        "html": "&lt;i&gt;", "text": "<i>"}


@given(st.text(max_size=100))
def test_customer_data_never_adds_markup_to_html(value):
    out = render("<p>{{ v }}</p>", {"v": value}, html=True)
    assert out.count("<") == 2 and out.count(">") == 2 and html_lib.unescape(out) == f"<p>{value}</p>"
