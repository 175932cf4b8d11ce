"""E-mail: subject, parts, sender fields, unsubscribe tag, RFC 8058 headers, size warning."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from engine import Creative, Customer
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.runtime import load_settings
from engine.validation import validate_message
from plugins import DEFAULT_PLUGINS
from plugins.channels.email import Email, html_to_text, text_to_html, unsubscribe_token, verify_unsubscribe
from tests.plugins.channels.common import codes, context, message

HTML = ('<p>Hello {{ customer.first_name | default: "there" }},</p><p>20% off all summer.</p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
SENDERS = {"email": {"from": "offers@herald.example", "reply_to": "care@herald.example", "sender_name": "Herald Shop"}}


SECRET = "org-secret-0123456789"
SIGNED = {"unsubscribe_secret": SECRET}


def email(**content):
    return Creative("email", content={"subject": "Summer sale: 20% off", "html": HTML, **content})


@pytest.fixture
def signed_registry():
    """The built-in plugins with an unsubscribe secret configured."""
    return Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), {"plugins.channels.email": SIGNED})


def test_a_real_creative_passes(signed_registry, catalogue):
    assert validate_message(message(email(), senders=SENDERS), signed_registry, catalogue) == []


def test_without_a_secret_the_preview_warns_that_links_are_unsigned(registry, catalogue):
    (issue,) = validate_message(message(email(), senders=SENDERS), registry, catalogue)
    assert (issue.path, issue.code, issue.severity) == ("creatives[0].content", "unsubscribe_unsigned", "warning")
    assert "unsubscribe_secret" in issue.message


def test_the_unsubscribe_tag_is_required(signed_registry, catalogue):
    msg = message(email(html="<p>20% off all summer.</p>"), senders=SENDERS)
    (issue,) = validate_message(msg, signed_registry, catalogue)
    assert issue.code == "missing_required_tag" and "unsubscribe_url" in issue.message


def test_every_body_part_needs_the_unsubscribe_tag(signed_registry, catalogue):
    msg = message(email(text="20% off all summer."), senders=SENDERS)
    (issue,) = validate_message(msg, signed_registry, catalogue)
    assert (issue.path, issue.code) == ("creatives[0].content.text", "missing_required_tag")


@pytest.mark.parametrize(("html", "code"), [
    ('{% if customer.tier %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}', "conditional_required_tag"),
    ('<a href="{{ unsubscribe_url | replace: \'u\', \'x\' }}">Unsubscribe</a>', "filtered_required_tag"),
    ('{% capture u %}{{ unsubscribe_url }}{% endcapture %}<a href="{{ u }}">Unsubscribe</a>', "assigned_required_tag"),
])
def test_the_unsubscribe_tag_must_be_output_unconditionally(signed_registry, catalogue, html, code):
    issues = validate_message(message(email(html=html), senders=SENDERS), signed_registry, catalogue)
    assert codes(issues) == {"creatives[0].content.html": code}


def test_subject_is_required():
    issues = Email(SIGNED).validate(Creative("email", content={"html": HTML}), message(senders=SENDERS))
    assert codes(issues) == {"subject": "required"}
    assert codes(Email(SIGNED).validate(email(subject="  "), message(senders=SENDERS))) == {"subject": "required"}


def test_subject_must_be_one_line():
    (issue,) = Email(SIGNED).validate(email(subject="Sale\nBcc: everyone@example.com"), message(senders=SENDERS))
    assert (issue.path, issue.code) == ("subject", "header_newline")


def test_a_text_part_alone_is_enough_but_one_part_is_required():
    text_only = Creative("email", content={"subject": "Sale", "text": "20% off. Unsubscribe: {{ unsubscribe_url }}"})
    assert codes(Email(SIGNED).validate(text_only, message(senders=SENDERS))) == {}
    neither = Creative("email", content={"subject": "Sale"})
    (issue,) = Email(SIGNED).validate(neither, message(senders=SENDERS))
    assert issue.path == "html" and "html or a text part" in issue.message


def test_from_is_required_and_addresses_must_be_valid():
    assert codes(Email(SIGNED).validate(email(), message())) == {"from": "required"}
    issues = Email(SIGNED).validate(email(reply_to="care at herald"), message(senders=SENDERS))
    (issue,) = issues
    assert (issue.path, issue.code) == ("reply_to", "invalid_email") and "care at herald" in issue.message
    assert codes(Email(SIGNED).validate(email(**{"from": "promo@herald.example"}), message())) == {}


def test_unknown_fields_are_named():
    (issue,) = Email(SIGNED).validate(email(cc="x@example.com"), message(senders=SENDERS))
    assert (issue.path, issue.code) == ("cc", "unknown_key")


def test_large_html_is_a_warning_not_an_error():
    big = HTML + "<p>" + "x" * (101 * 1024) + "</p>"
    (issue,) = Email(SIGNED).validate(email(html=big), message(senders=SENDERS))
    assert (issue.path, issue.code, issue.severity) == ("html", "large_html", "warning")
    assert "KB" in issue.message


def test_render_has_both_parts_sender_and_one_click_unsubscribe():
    channel = Email({"unsubscribe_base": "https://mail.herald.example/unsub", "unsubscribe_mailto": "unsub@herald.example",
                     **SIGNED})
    msg = message(email(), senders=SENDERS)
    ctx = context(channel, msg, Customer("c 1", {"email": "asha@example.com", "first_name": "Asha"}))
    payload = channel.render(email(), ctx)
    token = unsubscribe_token(SECRET, "c 1", "summer-sale")
    url = f"https://mail.herald.example/unsub?c=c+1&m=summer-sale&t={token}"
    assert payload["from"] == "Herald Shop <offers@herald.example>"
    assert payload["to"] == "asha@example.com" and payload["reply_to"] == "care@herald.example"
    assert payload["subject"] == "Summer sale: 20% off"
    assert f'href="{url.replace("&", "&amp;")}"' in payload["html"] and "Hello Asha," in payload["html"]
    assert payload["text"] == f"Hello Asha,\n20% off all summer.\nUnsubscribe ({url})"
    assert payload["headers"] == {"List-Unsubscribe": f"<{url}>, <mailto:unsub@herald.example?subject=unsubscribe>",
                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert channel.compliance(payload, ctx) == []


def test_unsubscribe_links_carry_a_token_only_the_org_can_make():
    channel = Email(SIGNED)
    query = parse_qs(urlsplit(channel.unsubscribe_url("summer-sale", "c1")).query)
    assert query["c"] == ["c1"] and query["m"] == ["summer-sale"] and len(query["t"][0]) == 22
    token = query["t"][0]
    assert channel.verify_unsubscribe("c1", "summer-sale", token)
    assert not channel.verify_unsubscribe("c2", "summer-sale", token)  # someone else's id in the URL
    assert not channel.verify_unsubscribe("c1", "winter-sale", token)
    assert not verify_unsubscribe("another-org-secret-000", "c1", "summer-sale", token)
    assert not verify_unsubscribe(None, "c1", "summer-sale", token)
    assert not channel.verify_unsubscribe("c1", "summer-sale", token[:-1] + ("A" if token[-1] != "A" else "B"))


def test_ids_cannot_be_shifted_between_customer_and_message():
    assert unsubscribe_token(SECRET, "a", "bc") != unsubscribe_token(SECRET, "ab", "c")


def test_without_a_secret_links_say_unsigned_and_a_real_send_is_refused():
    channel = Email({})
    ctx = context(channel, message(senders=SENDERS), Customer("c1", {"email": "a@example.com"}))
    payload = channel.render(email(), ctx)
    assert "t=unsigned" in payload["headers"]["List-Unsubscribe"] and not channel.verify_unsubscribe("c1", "summer-sale", "unsigned")
    assert channel.compliance(payload, ctx, preview=True) == []
    assert [i.code for i in channel.compliance(payload, ctx, preview=False)] == ["unsubscribe_unsigned"]


@pytest.mark.parametrize("secret", ["short", 12345])
def test_a_weak_secret_is_refused(secret):
    with pytest.raises(ValueError, match="unsubscribe_secret"):
        Email({"unsubscribe_secret": secret})


def test_the_secret_comes_from_the_environment_through_the_settings_file(tmp_path, monkeypatch):
    settings = tmp_path / "settings.yaml"
    settings.write_text("plugins:\n  plugins.channels.email:\n    unsubscribe_secret: $env:HERALD_UNSUB_SECRET\n")
    monkeypatch.setenv("HERALD_UNSUB_SECRET", SECRET)
    registry = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), load_settings(settings))
    channel = registry.channels["email"].obj
    token = parse_qs(urlsplit(channel.unsubscribe_url("m1", "c1")).query)["t"][0]
    assert token == unsubscribe_token(SECRET, "c1", "m1")


def test_customer_values_are_html_escaped_but_the_template_markup_is_kept():
    channel = Email(SIGNED)
    hostile = '<img src=x onerror=alert(1)> "Asha" & co'
    ctx = context(channel, message(senders=SENDERS), Customer("c1", {"email": "a@example.com", "first_name": hostile}))
    payload = channel.render(email(), ctx)
    assert "<p>Hello &lt;img src=x onerror=alert(1)&gt; &#34;Asha&#34; &amp; co,</p>" in payload["html"]
    assert "<img" not in payload["html"] and '<a href="https://herald.example/u?c=c1&amp;m=summer-sale' in payload["html"]
    assert payload["text"].startswith(f"Hello {hostile},")  # the text part is not HTML: no escaping there
    assert channel.compliance(payload, ctx) == []


def test_the_safe_filter_is_refused_at_load(signed_registry, catalogue):
    html = HTML + "{{ customer.first_name | safe }}"
    issues = validate_message(message(email(html=html), senders=SENDERS), signed_registry, catalogue)
    assert codes(issues) == {"creatives[0].content.html": "unsafe_filter"}


@pytest.mark.parametrize("name", ["Asha\r\nBcc: everyone@example.com", "Asha\nX-Spam: yes", "Ashä\nBcc: x@example.com",
                                  "Asha\u2028Bcc: x@example.com"])
def test_a_line_break_from_customer_data_in_a_header_is_refused(name):
    channel = Email(SIGNED)
    creative = email(subject="{{ customer.first_name }}, 20% off", sender_name="{{ customer.first_name }} at Herald")
    ctx = context(channel, message(senders=SENDERS), Customer("c1", {"email": "a@example.com", "first_name": name}))
    payload = channel.render(creative, ctx)
    assert {(i.path, i.code) for i in channel.compliance(payload, ctx)} == {
        ("subject", "header_injection"), ("from", "header_injection")}


def test_a_body_without_the_recipients_link_fails_compliance():
    channel = Email(SIGNED)
    ctx = context(channel, message(senders=SENDERS), Customer("c1", {"email": "a@example.com", "tier": "silver"}))
    payload = channel.render(email(html="<p>Sale</p>{% if customer.tier == 'gold' %}{{ unsubscribe_url }}{% endif %}"), ctx)
    assert {(i.path, i.code) for i in channel.compliance(payload, ctx)} == {("html", "compliance"), ("text", "compliance")}


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
    assert html_to_text("<a href='https://x.example/?a=1&amp;b=2'>Stop</a>") == "Stop (https://x.example/?a=1&b=2)"
    assert text_to_html("a\nb\n\nc") == "<!DOCTYPE html><html><body><p>a<br>b</p><p>c</p></body></html>"
