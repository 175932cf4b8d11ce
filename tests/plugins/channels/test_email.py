"""E-mail: subject, parts, sender fields, unsubscribe tag, RFC 8058 headers, size warning."""

from __future__ import annotations

import pytest

from engine import Creative, Customer
from engine.validation import validate_message
from plugins.channels.email import Email, html_to_text, text_to_html
from tests.plugins.channels.common import codes, context, message

HTML = ('<p>Hello {{ customer.first_name | default: "there" }},</p><p>20% off all summer.</p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
SENDERS = {"email": {"from": "offers@herald.example", "reply_to": "care@herald.example", "sender_name": "Herald Shop"}}


def email(**content):
    return Creative("email", content={"subject": "Summer sale: 20% off", "html": HTML, **content})


def test_a_real_creative_passes(registry, catalogue):
    assert validate_message(message(email(), senders=SENDERS), registry, catalogue) == []


def test_the_unsubscribe_tag_is_required(registry, catalogue):
    msg = message(email(html="<p>20% off all summer.</p>"), senders=SENDERS)
    (issue,) = validate_message(msg, registry, catalogue)
    assert issue.code == "missing_required_tag" and "unsubscribe_url" in issue.message


def test_subject_is_required():
    issues = Email({}).validate(Creative("email", content={"html": HTML}), message(senders=SENDERS))
    assert codes(issues) == {"subject": "required"}
    assert codes(Email({}).validate(email(subject="  "), message(senders=SENDERS))) == {"subject": "required"}


def test_subject_must_be_one_line():
    (issue,) = Email({}).validate(email(subject="Sale\nBcc: everyone@example.com"), message(senders=SENDERS))
    assert (issue.path, issue.code) == ("subject", "header_newline")


def test_a_text_part_alone_is_enough_but_one_part_is_required():
    text_only = Creative("email", content={"subject": "Sale", "text": "20% off. Unsubscribe: {{ unsubscribe_url }}"})
    assert codes(Email({}).validate(text_only, message(senders=SENDERS))) == {}
    neither = Creative("email", content={"subject": "Sale"})
    (issue,) = Email({}).validate(neither, message(senders=SENDERS))
    assert issue.path == "html" and "html or a text part" in issue.message


def test_from_is_required_and_addresses_must_be_valid():
    assert codes(Email({}).validate(email(), message())) == {"from": "required"}
    issues = Email({}).validate(email(reply_to="care at herald"), message(senders=SENDERS))
    (issue,) = issues
    assert (issue.path, issue.code) == ("reply_to", "invalid_email") and "care at herald" in issue.message
    assert codes(Email({}).validate(email(**{"from": "promo@herald.example"}), message())) == {}


def test_unknown_fields_are_named():
    (issue,) = Email({}).validate(email(cc="x@example.com"), message(senders=SENDERS))
    assert (issue.path, issue.code) == ("cc", "unknown_key")


def test_large_html_is_a_warning_not_an_error():
    big = HTML + "<p>" + "x" * (101 * 1024) + "</p>"
    (issue,) = Email({}).validate(email(html=big), message(senders=SENDERS))
    assert (issue.path, issue.code, issue.severity) == ("html", "large_html", "warning")
    assert "KB" in issue.message


def test_render_has_both_parts_sender_and_one_click_unsubscribe():
    channel = Email({"unsubscribe_base": "https://mail.herald.example/unsub", "unsubscribe_mailto": "unsub@herald.example"})
    msg = message(email(), senders=SENDERS)
    ctx = context(channel, msg, Customer("c 1", {"email": "asha@example.com", "first_name": "Asha"}))
    payload = channel.render(email(), ctx)
    url = "https://mail.herald.example/unsub/summer-sale/c%201"
    assert payload["from"] == "Herald Shop <offers@herald.example>"
    assert payload["to"] == "asha@example.com" and payload["reply_to"] == "care@herald.example"
    assert payload["subject"] == "Summer sale: 20% off"
    assert f'href="{url}"' in payload["html"] and "Hello Asha," in payload["html"]
    assert payload["text"] == f"Hello Asha,\n20% off all summer.\nUnsubscribe ({url})"
    assert payload["headers"] == {"List-Unsubscribe": f"<{url}>, <mailto:unsub@herald.example?subject=unsubscribe>",
                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def test_render_generates_html_from_a_text_only_creative():
    channel = Email({})
    creative = Creative("email", content={"subject": "Sale", "text": "20% off <today>.\n\nBye: {{ unsubscribe_url }}"})
    payload = channel.render(creative, context(channel, message(senders=SENDERS), Customer("c1", {"email": "a@example.com"})))
    assert payload["text"].startswith("20% off <today>.")
    assert "<p>20% off &lt;today&gt;.</p>" in payload["html"]


def test_unsubscribe_base_must_be_https():
    with pytest.raises(ValueError, match="https"):
        Email({"unsubscribe_base": "http://herald.example/u"})


def test_html_and_text_conversions_round_trip_the_words():
    assert html_to_text("<style>p{}</style><h1>Hi</h1><p>A &amp; B<br>C</p>") == "Hi\nA & B\nC"
    assert text_to_html("a\nb\n\nc") == "<!DOCTYPE html><html><body><p>a<br>b</p><p>c</p></body></html>"
