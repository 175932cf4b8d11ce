"""SMS: opt-out tag, encodings and segments, sender ids, tracked links, DLT templates, gateway payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Creative, Customer
from engine.validation import validate_message
from plugins.channels.sms import Sms, encoding, segments, sender_id_problems
from tests.plugins.channels.common import codes, context, message

BODY = "Summer sale: 20% off everything until Sunday. {{ optout }}"


def sms(body=BODY, **content):
    return Creative("sms", content={"body": body, **content})


def test_a_real_creative_passes(registry, catalogue):
    msg = message(sms(), senders={"sms": {"sender_id": "HERALD"}})
    assert validate_message(msg, registry, catalogue) == []


def test_the_opt_out_tag_is_required(registry, catalogue):
    msg = message(sms("Summer sale: 20% off everything until Sunday."))
    (issue,) = validate_message(msg, registry, catalogue)
    assert issue.path == "creatives[0].content.body" and issue.code == "missing_required_tag" and "optout" in issue.message


@pytest.mark.parametrize(("body", "code"), [
    ("Sale! {% if customer.tier == 'gold' %}{{ optout }}{% endif %}", "conditional_required_tag"),
    ("Sale! {% unless customer.tier %}{{ optout }}{% endunless %}", "conditional_required_tag"),
    ("Sale! {% case customer.tier %}{% when 'gold' %}{{ optout }}{% endcase %}", "conditional_required_tag"),
    ("Sale! {% for a in customer.affinities %}{{ optout }}{% endfor %}", "conditional_required_tag"),
    ("Sale! {% capture o %}{{ optout }}{% endcapture %}{{ o }}", "assigned_required_tag"),
    ("Sale! {% assign o = optout %}{{ o }}", "assigned_required_tag"),
    ("Sale! {{ optout | upcase }}", "filtered_required_tag"),
    ("Sale! {{ optout | default: '' }}", "filtered_required_tag"),
    ("Sale! {{ optout | replace: 'STOP', '' }}", "filtered_required_tag"),
    ("Sale! {{ optout | slice: 0 }}", "filtered_required_tag"),
    ("Sale! {% assign optout = '' %}{{ optout }}", "rebound_required_tag"),
])
def test_the_opt_out_tag_must_be_output_unconditionally(registry, catalogue, body, code):
    issues = validate_message(message(sms(body)), registry, catalogue)
    (issue,) = [i for i in issues if i.is_error]
    assert (issue.path, issue.code) == ("creatives[0].content.body", code)
    assert "{{ optout }}" in issue.message and "line 1, column" in issue.message


def test_a_plain_top_level_opt_out_tag_passes_with_whitespace_control(registry, catalogue):
    assert codes(validate_message(message(sms("Sale! {{- optout -}}")), registry, catalogue)) == {}


def test_the_opt_out_text_cannot_be_empty():
    with pytest.raises(ValueError, match="optout_text"):
        Sms({"optout_text": "  "})


def test_unknown_tags_are_errors(registry, catalogue):
    msg = message(sms("Hi {{ customer.nickname_typo }}! {{ optout }}"))
    assert codes(validate_message(msg, registry, catalogue)) == {"creatives[0].content.body": "unknown_tag"}


def test_body_is_required_and_unknown_fields_are_named():
    issues = Sms({}).validate(Creative("sms", content={"text": "hello"}), message())
    assert codes(issues) == {"text": "unknown_key", "body": "required"}
    assert "'text'" in issues[0].message


@pytest.mark.parametrize(("text", "enc", "units", "parts"), [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),   # extension characters count double
    ("€" * 81, "GSM-7", 162, 2),
    ("[x]" * 32, "GSM-7", 160, 1),
    ("é" * 160, "GSM-7", 160, 1),  # é is in the basic GSM table
    ("ó" * 70, "UCS-2", 70, 1),    # ó is not
    ("ó" * 71, "UCS-2", 71, 2),
    ("ó" * 134, "UCS-2", 134, 2),
    ("ó" * 135, "UCS-2", 135, 3),
    ("🎉" * 35, "UCS-2", 70, 1),    # an emoji is two UTF-16 units
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # the escape pair does not fit in part 1: it opens part 2
    ("a" * 152 + "€", "GSM-7", 154, 1),
    ("a" * 153 + "€" + "a" * 151, "GSM-7", 306, 2),  # the pair starts part 2 exactly
    ("ó" * 66 + "🎉" + "ó" * 66, "UCS-2", 134, 3),  # the surrogate pair straddles unit 67: it moves to part 2
    ("ó" * 67 + "🎉" + "ó" * 65, "UCS-2", 134, 2),
    ("🎉" * 36, "UCS-2", 72, 2),
])
def test_encoding_and_segments(text, enc, units, parts):
    assert encoding(text) == (enc, units)
    assert segments(text) == (enc, units, parts)


def test_the_maximum_number_of_segments_is_configurable():
    long_body = "Big summer sale on every electronics item in store and online. " * 4 + "{{ optout }}"
    assert codes(Sms({}).validate(sms(long_body), message())) == {}
    (issue,) = [i for i in Sms({"max_segments": 1}).validate(sms(long_body), message()) if i.is_error]
    assert (issue.path, issue.code) == ("body", "too_long") and "2 segments" in issue.message and "maximum is 1" in issue.message


def test_multi_segment_and_unicode_bodies_are_reported_as_warnings():
    issues = Sms({}).validate(sms("Soldes d’été : –20 % {{ optout }}"), message())
    (warning,) = issues
    assert warning.severity == "warning" and warning.code == "unicode" and "’" in warning.message


def test_tracked_links_count_at_their_shortened_length():
    link = "https://shop.example.com/summer-sale/electronics/headphones?utm_source=sms&utm_campaign=summer-2026-launch"
    body = f"Big summer sale on headphones and speakers today only, see {link} {{{{ optout }}}}"
    channel = Sms({"max_segments": 1})
    assert codes(channel.validate(sms(body), message())) == {"body": "too_long"}
    assert codes(channel.validate(sms(body), message(tiny_url=True))) == {}
    assert len(channel.estimated_text(body, message(tiny_url=True))) == len(body) - len(link) + 23 - len("{{ optout }}") + len("Reply STOP to opt out")


@pytest.mark.parametrize("sender", ["HERALD", "Herald Shop", "56789", "12345678", "+14155552671", "919812345678"])
def test_valid_sender_ids(sender):
    assert sender_id_problems(sender) == []
    assert codes(Sms({}).validate(sms(sender_id=sender), message())) == {}


@pytest.mark.parametrize("sender", ["HERALDSHOPXYZ", "12", "1234567890", "HERALD!", "+1999"])
def test_invalid_sender_ids(sender):
    (issue,) = [i for i in Sms({}).validate(sms(sender_id=sender), message()) if i.is_error]
    assert issue.path == "sender_id" and sender in issue.message


def test_the_message_sender_is_checked_when_the_creative_has_none():
    issues = Sms({}).validate(sms(), message(senders={"sms": {"sender_id": "TOO-LONG-SENDER"}}))
    assert codes(issues) == {"sender_id": "sender_id"}


DLT = {"dlt": {"entity_id": "1101234567890123456", "templates": [
    {"id": "1107000000000000001", "category": "promotional",
     "body": "Summer sale: {#var#} off with code {#var#}. Shop {#var#} Reply STOP to opt out"},
    {"id": "1107000000000000002", "category": "service_implicit",
     "body": "Dear {#var#}, your order {#var#} has shipped. Reply STOP to opt out"},
]}}
PROMO = "Summer sale: {{ vars.discount }} off with code {{ coupon.code }}. Shop https://s.example/x {{ optout }}"


def test_dlt_body_matching_a_template_with_a_matching_header_passes():
    channel = Sms(DLT)
    assert codes(channel.validate(sms(PROMO, sender_id="567890"), message(tiny_url=True))) == {}
    shipped = "Dear {{ customer.first_name }}, your order {{ vars.order }} has shipped. {{ optout }}"
    assert codes(channel.validate(sms(shipped, sender_id="HERALD"), message())) == {}


def test_dlt_body_that_differs_outside_the_slots_fails():
    body = PROMO.replace("Summer sale:", "Summer sale!")
    (issue,) = Sms(DLT).validate(sms(body, sender_id="567890"), message())
    assert (issue.path, issue.code) == ("body", "dlt_template_mismatch") and "{#var#}" in issue.message


def test_dlt_stray_space_breaks_the_match():
    body = PROMO.replace("off with", "off  with")
    assert codes(Sms(DLT).validate(sms(body, sender_id="567890"), message())) == {"body": "dlt_template_mismatch"}


def test_dlt_header_class_must_match_the_template_category():
    issues = Sms(DLT).validate(sms(PROMO, sender_id="HERALD"), message())
    (issue,) = [i for i in issues if i.is_error]
    assert issue.path == "sender_id" and issue.code == "dlt_header" and "promotional" in issue.message
    shipped = "Dear {{ customer.first_name }}, your order 42 has shipped. {{ optout }}"
    assert codes(Sms(DLT).validate(sms(shipped, sender_id="567890"), message())) == {"sender_id": "dlt_header"}


def test_dlt_named_template_must_exist_and_match():
    channel = Sms(DLT)
    assert codes(channel.validate(sms(PROMO, sender_id="567890", dlt_template_id="999"), message())) == {
        "dlt_template_id": "dlt_unknown_template"}
    assert codes(channel.validate(sms(PROMO, sender_id="567890", dlt_template_id="1107000000000000002"), message())) == {
        "body": "dlt_template_mismatch"}
    per_message = message(senders={"sms": {"sender_id": "567890", "dlt_template_id": "1107000000000000001"}})
    assert codes(channel.validate(sms(PROMO), per_message)) == {}


def test_dlt_links_must_sit_inside_a_var_slot():
    templates = {"dlt": {"templates": [{"id": "T1", "category": "promotional",
                                        "body": "Sale {#var#} at https://shop.example/sale Reply STOP to opt out"}]}}
    body = "Sale {{ vars.discount }} at https://shop.example/sale {{ optout }}"
    issues = Sms(templates).validate(sms(body, sender_id="567890"), message())
    (issue,) = issues
    assert issue.code == "dlt_link_outside_var" and "https://shop.example/sale" in issue.message


def test_dlt_needs_a_sender():
    assert codes(Sms(DLT).validate(sms(PROMO), message())) == {"sender_id": "required"}


def test_dlt_settings_reject_unknown_categories():
    with pytest.raises(ValueError, match="category"):
        Sms({"dlt": {"templates": [{"id": "1", "category": "marketing", "body": "x"}]}})


def test_render_gives_a_gateway_request():
    channel = Sms({})
    msg = message(sms(), senders={"sms": {"sender_id": "HERALD"}})
    payload = channel.render(sms("Hi {{ customer.first_name }}, 20% off today. {{ optout }}"),
                             context(channel, msg, Customer("c1", {"phone": "+919812345678", "first_name": "Asha"})))
    assert payload == {"to": "+919812345678", "from": "HERALD", "text": "Hi Asha, 20% off today. Reply STOP to opt out",
                       "encoding": "GSM-7", "units": 45, "segments": 1}


def test_render_in_dlt_mode_names_the_template_and_entity():
    channel = Sms(DLT)
    msg = message(senders={"sms": {"sender_id": "567890"}})
    payload = channel.render(sms(PROMO), context(channel, msg, Customer("c1", {"phone": "9812345678"}),
                                                 discount="20%") | {"coupon": {"code": "SUN20"}})
    assert payload["dlt"] == {"entity_id": "1101234567890123456", "template_id": "1107000000000000001"}
    assert payload["text"] == "Summer sale: 20% off with code SUN20. Shop https://s.example/x Reply STOP to opt out"


def test_a_rendered_text_without_the_opt_out_text_fails_compliance():
    channel = Sms({"optout_text": "Txt STOP to 12345"})
    msg = message(senders={"sms": {"sender_id": "HERALD"}})
    ctx = context(channel, msg, Customer("c1", {"phone": "+919812345678", "tier": "silver"}))
    unconditional = channel.render(sms("Sale! {{ optout }}"), ctx)
    assert channel.compliance(unconditional, ctx) == []
    # a creative that bypassed the load check: the opt-out is inside a condition this recipient fails
    conditional = channel.render(sms("Sale! {% if customer.tier == 'gold' %}{{ optout }}{% endif %}"), ctx)
    (issue,) = channel.compliance(conditional, ctx)
    assert (issue.path, issue.code) == ("text", "compliance") and "Txt STOP to 12345" in issue.message


def test_customer_data_cannot_replace_the_opt_out_text():
    channel = Sms({})
    msg = message(senders={"sms": {"sender_id": "HERALD"}})
    ctx = context(channel, msg, Customer("c1", {"phone": "+919812345678", "optout": ""}), optout="")
    payload = channel.render(sms("Sale! {{ optout }}"), ctx)
    assert payload["text"] == "Sale! Reply STOP to opt out" and channel.compliance(payload, ctx) == []


def test_a_rendered_text_above_the_maximum_segments_fails_compliance():
    channel = Sms({"max_segments": 1})
    msg = message(senders={"sms": {"sender_id": "HERALD"}})
    ctx = context(channel, msg, Customer("c1", {"phone": "+919812345678", "first_name": "A" * 150}))
    payload = channel.render(sms("Hi {{ customer.first_name }} {{ optout }}"), ctx)
    (issue,) = channel.compliance(payload, ctx)
    assert (issue.path, issue.code) == ("text", "too_long") and "2 segments" in issue.message


def test_dlt_variables_are_at_most_30_characters_after_rendering():
    channel = Sms(DLT)
    msg = message(senders={"sms": {"sender_id": "HERALD"}})
    body = "Dear {{ customer.first_name }}, your order {{ vars.order }} has shipped. {{ optout }}"
    ok = context(channel, msg, Customer("c1", {"phone": "9812345678", "first_name": "A" * 30}), order="42")
    assert channel.compliance(channel.render(sms(body), ok), ok) == []
    long = context(channel, msg, Customer("c1", {"phone": "9812345678", "first_name": "A" * 31}), order="42")
    (issue,) = channel.compliance(channel.render(sms(body), long), long)
    assert (issue.path, issue.code) == ("text", "dlt_var_too_long") and "31 characters" in issue.message


def test_dlt_rendered_text_must_still_match_its_template():
    channel = Sms(DLT)
    msg = message(senders={"sms": {"sender_id": "HERALD", "dlt_template_id": "1107000000000000002"}})
    ctx = context(channel, msg, Customer("c1", {"phone": "9812345678", "first_name": "Asha"}), order="42")
    # the body renders to text outside the template (only possible for a creative that skipped validation)
    payload = channel.render(sms("Dear {{ customer.first_name }}, hello. {{ optout }}"), ctx)
    assert [i.code for i in channel.compliance(payload, ctx)] == ["dlt_template_mismatch"]


def test_dlt_fixed_text_longer_than_30_characters_in_a_slot_is_a_load_error():
    body = ("Summer sale: {{ vars.discount }} off with code {{ coupon.code }}. "
            "Shop https://shop.example.com/summer/electronics/all {{ optout }}")
    issues = Sms(DLT).validate(sms(body, sender_id="567890"), message())
    assert codes(issues) == {"body": "dlt_var_too_long"}
    assert codes(Sms(DLT).validate(sms(body, sender_id="567890"), message(tiny_url=True))) == {}


def test_rendered_segments_count_tracked_links_at_their_shortened_length():
    link = "https://shop.example.com/summer-sale/electronics/headphones?utm_source=sms&utm_campaign=summer-2026-launch"
    body = f"Big summer sale on headphones and speakers today only, see {link} {{{{ optout }}}}"
    channel = Sms({"max_segments": 1})
    for tiny, parts in ((False, 2), (True, 1)):
        msg = message(senders={"sms": {"sender_id": "HERALD"}}, tiny_url=tiny)
        ctx = context(channel, msg, Customer("c1", {"phone": "+919812345678"}))
        payload = channel.render(sms(body), ctx)
        assert payload["text"].startswith("Big summer sale") and link in payload["text"]
        assert payload["segments"] == parts and (channel.compliance(payload, ctx) == []) is tiny


@given(st.lists(st.sampled_from(["a", "€", "[", "ó", "🎉", " "]), min_size=1, max_size=600).map("".join))
def test_pairs_cost_at_most_one_wasted_unit_per_part(text):
    enc, units, parts = segments(text)
    single, part = (160, 153) if enc == "GSM-7" else (70, 67)
    if units <= single:
        assert parts == 1
    else:  # a pair that does not fit wastes one unit of the part it skips, never more
        assert -(-units // part) <= parts <= -(-units // (part - 1))
