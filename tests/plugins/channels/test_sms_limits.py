"""SMS limits at their edges: sender id and short code lengths, India DLT headers (numeric 3–9 digits for
promotional templates, alphabetic 3–9 letters for service ones; see shared/reference/engage-plus-facts.md
§3.1), and the defaults (``max_segments`` 6, the opt-out text, the tracked-link length)."""

from __future__ import annotations

import pytest

from engine import Creative
from plugins.channels.sms import Sms, segments, sender_id_problems
from tests.plugins.channels.common import codes, message

BODY = "Summer sale: 20% off everything until Sunday. {{ optout }}"


def sms(body=BODY, **content):
    return Creative("sms", content={"body": body, **content})


@pytest.mark.parametrize("sender", ["H", "HERALD", "HERALDSHOP1", "Shop 2 & Co", "a.b_c-d", "123", "12345678",
                                    "+14155552671", "919812345678"])
def test_sender_ids_at_their_limits_are_accepted(sender):
    assert sender_id_problems(sender) == []


@pytest.mark.parametrize(("sender", "why"), [
    ("HERALDSHOP12", "alphanumeric"),  # 12 characters: one too many
    ("12", "numeric"),  # a short code has at least 3 digits
    ("123456789", "numeric"),  # 9 digits: neither a short code nor a valid number
    ("+123", "numeric"),  # a long code must be a valid number; a short code has no +
    ("+12345678", "numeric"),
    ("1234_", "alphanumeric"),  # no letter
    ("", "alphanumeric"),
    ("SHOP!", "alphanumeric"),
    ("ÉCOLE", "alphanumeric"),  # letters outside ASCII are not sendable as a sender id
    ("²³⁴", "sender id"),  # superscript digits are not digits to a gateway
    ("١٢٣٤٥", "sender id"),  # Arabic-Indic digits
])
def test_sender_ids_beyond_their_limits_are_refused(sender, why):
    (problem,) = sender_id_problems(sender)
    assert why in problem and repr(sender) in problem


DLT = {"dlt": {"entity_id": "1101234567890123456", "templates": [
    {"id": "P1", "category": "promotional", "body": "Sale {#var#} off. Reply STOP to opt out"},
    {"id": "S1", "category": "service_explicit", "body": "Your order {#var#} shipped. Reply STOP to opt out"},
    {"id": "S2", "category": "service_implicit", "body": "OTP {#var#}. Reply STOP to opt out"},
    {"id": "T1", "category": "transactional", "body": "Paid {#var#}. Reply STOP to opt out"},
]}}
PROMO = "Sale {{ vars.discount }} off. {{ optout }}"
SERVICE = "Your order {{ vars.order }} shipped. {{ optout }}"


@pytest.mark.parametrize("header", ["123", "567890", "123456789"])
def test_numeric_dlt_headers_of_3_to_9_digits_send_promotional_templates(header):
    assert codes(Sms(DLT).validate(sms(PROMO, sender_id=header), message())) == {}


@pytest.mark.parametrize("header", ["12", "1234567890", "12345a", "١٢٣٤٥٦", "²³⁴⁵⁶⁷"])
def test_other_headers_cannot_send_promotional_templates(header):
    issues = Sms(DLT).validate(sms(PROMO, sender_id=header), message())
    assert "sender_id" in codes(issues)
    assert any("3–9 digits" in i.message for i in issues if i.path == "sender_id")


@pytest.mark.parametrize("header", ["HDF", "HERALD", "HERALDSMS"])
@pytest.mark.parametrize("body", [SERVICE, "OTP {{ vars.code }}. {{ optout }}", "Paid {{ vars.amount }}. {{ optout }}"])
def test_alphabetic_dlt_headers_of_3_to_9_letters_send_service_templates(header, body):
    assert codes(Sms(DLT).validate(sms(body, sender_id=header), message())) == {}


@pytest.mark.parametrize("header", ["HD", "HERALDSHOP", "HERALD1", "HER ALD", "ÉCOLES", "567890"])
def test_other_headers_cannot_send_service_templates(header):
    issues = Sms(DLT).validate(sms(SERVICE, sender_id=header), message())
    assert codes(issues) == {"sender_id": "dlt_header"}
    assert any("3–9 letters" in i.message for i in issues)


def test_a_malformed_dlt_header_is_reported_even_when_the_body_matches_no_template():
    issues = Sms(DLT).validate(sms("Not a registered text {{ optout }}", sender_id="HERALD-1"), message())
    assert codes(issues) == {"body": "dlt_template_mismatch", "sender_id": "dlt_header"}


def test_the_default_maximum_is_6_segments():
    assert Sms({}).max_segments == 6
    six = "x" * (153 * 6 - len(" Reply STOP to opt out")) + " {{ optout }}"
    seven = "x" + six
    assert segments(Sms({}).estimated_text(six, message()))[2] == 6
    assert codes(Sms({}).validate(sms(six), message())) == {}
    assert codes(Sms({}).validate(sms(seven), message())) == {"body": "too_long"}


def test_a_single_segment_holds_exactly_160_gsm_or_70_ucs2_characters():
    assert segments("x" * 160) == ("GSM-7", 160, 1)
    assert segments("x" * 161) == ("GSM-7", 161, 2)
    assert segments("é" * 160)[2] == 1  # é is in the GSM-7 basic set
    assert segments("ж" * 70) == ("UCS-2", 70, 1)
    assert segments("ж" * 71) == ("UCS-2", 71, 2)
    assert segments("x" * 306) == ("GSM-7", 306, 2)
    assert segments("x" * 307) == ("GSM-7", 307, 3)
    assert segments("ж" * 134) == ("UCS-2", 134, 2)
    assert segments("ж" * 135) == ("UCS-2", 135, 3)


def test_other_defaults():
    channel = Sms({})
    assert channel.tags == {"optout": "Reply STOP to opt out"}
    assert channel.short_link_length == 23
    assert channel.cost == 0.01
    assert channel.dlt_templates is None and channel.dlt_entity_id is None
    assert Sms({"max_segments": "3", "cost": "0.02", "short_link_length": 20}).max_segments == 3
