"""SMS issues and payloads in full, as the user sees them: path, code, severity and the whole text of every
finding (validation and rendered-output compliance, DLT included), the trace reason of an unreachable
recipient, and the channel's own sample creatives. Written from the mutation run (tests/MUTATION.md): each
test pins text or a boundary that a surviving mutant could change without any other test noticing."""

from __future__ import annotations

import pytest

from engine import Creative, Customer, Issue
from engine.registry import Registry
from engine.testing import sample_creatives
from engine.validation import validate_message
from plugins.channels.sms import Sms
from tests.plugins.channels.common import context, message

DLT = {"dlt": {"entity_id": "1101234567890123456", "templates": [
    {"id": "P1", "category": "promotional", "body": "Sale {#var#} off on {#var#}. Reply STOP to opt out"},
    {"id": "S1", "category": "service_implicit", "body": "Dear {#var#}, your order shipped. Reply STOP to opt out"},
    {"id": "F1", "category": "transactional", "body": "Your bill is paid. Reply STOP to opt out"},
]}}


def sms(body: str, **content: str) -> Creative:
    return Creative("sms", content={"body": body, **content})


# --- validation: warnings and errors in full -------------------------------------------------------------

def test_a_two_segment_body_is_one_warning_naming_its_size():
    body = "x" * 150 + " {{ optout }}"  # 150 + 1 + 21 = 172 septets: 2 segments
    assert Sms({}).validate(sms(body), message()) == [
        Issue("body", "segments", "the body is about 172 GSM-7 characters: 2 segments, each billed", "warning")]


def test_a_unicode_body_names_its_first_ten_non_gsm_characters_once_each_and_not_those_in_tags():
    odd = "абвгдежзийк"  # 11 Cyrillic letters: only the first 10 are named
    body = f"{odd} {odd} {{{{ customer.first_name | default: 'ó' }}}} {{{{ optout }}}}"
    issues = Sms({}).validate(sms(body), message())
    assert issues == [Issue("body", "unicode", "the body needs UCS-2 (70 characters per SMS) because of 'абвгдежзий'",
                            "warning")]


def test_a_unicode_body_of_two_segments_gets_both_warnings():
    body = "ж" * 60 + " {{ optout }}"  # 60 + 1 + 21 = 82 UCS-2 units
    assert Sms({}).validate(sms(body), message()) == [
        Issue("body", "unicode", "the body needs UCS-2 (70 characters per SMS) because of 'ж'", "warning"),
        Issue("body", "segments", "the body is about 82 UCS-2 characters: 2 segments, each billed", "warning")]


def test_too_many_segments_is_one_error_in_full():
    issues = Sms({"max_segments": 1}).validate(sms("x" * 200 + " {{ optout }}"), message())
    assert issues == [Issue("body", "too_long", "the body is about 222 GSM-7 characters, 2 segments; "
                                                "the maximum is 1 segments")]


def test_a_blank_body_and_a_bad_sender_in_full():
    assert Sms({}).validate(sms("   "), message()) == [Issue("body", "required", "the SMS body is required")]
    assert Sms({}).validate(sms("Hi {{ optout }}", sender_id="12"), message()) == [Issue(
        "sender_id", "sender_id",
        "sender id '12': a numeric sender id is a 3–8 digit short code or a valid international long code")]
    assert Sms({}).validate(sms("Hi {{ optout }}", sender_id="SHOP!"), message()) == [Issue(
        "sender_id", "sender_id", "sender id 'SHOP!': an alphanumeric sender id has 1–11 letters, digits, spaces "
                                  "or . & _ - and at least one letter")]


# --- DLT validation -------------------------------------------------------------------------------------

def test_dlt_an_unknown_template_id_in_full():
    issues = Sms(DLT).validate(sms("Sale 5% off on shoes. {{ optout }}", sender_id="567890", dlt_template_id="999"),
                               message())
    assert issues == [Issue("dlt_template_id", "dlt_unknown_template", "DLT template '999' is not registered")]


def test_dlt_a_body_matching_no_template_and_no_sender_in_full():
    assert Sms(DLT).validate(sms("Hello there. {{ optout }}"), message()) == [
        Issue("body", "dlt_template_mismatch",
              "the body does not match any registered DLT template; only {#var#} slots may vary (spaces count)"),
        Issue("sender_id", "required", "DLT mode needs a registered sender id (header)")]


def test_dlt_the_template_named_by_the_message_is_the_one_the_body_must_match():
    """The body matches P1, but the message's delivery settings name S1: a mismatch naming S1."""
    named = message(senders={"sms": {"sender_id": "HERALD", "dlt_template_id": "S1"}})
    assert Sms(DLT).validate(sms("Sale {{ vars.d }} off on {{ vars.what }}. {{ optout }}"), named) == [
        Issue("body", "dlt_template_mismatch",
              "the body does not match DLT template S1; only {#var#} slots may vary (spaces count)")]
    unknown = message(senders={"sms": {"sender_id": "567890", "dlt_template_id": "nope"}})
    assert Sms(DLT).validate(sms("Sale 5% off on shoes. {{ optout }}"), unknown) == [
        Issue("dlt_template_id", "dlt_unknown_template", "DLT template 'nope' is not registered")]


def test_dlt_a_bad_header_and_a_mismatch_are_both_reported():
    assert Sms(DLT).validate(sms("Hello there. {{ optout }}", sender_id="HERALD-1"), message()) == [
        Issue("body", "dlt_template_mismatch",
              "the body does not match any registered DLT template; only {#var#} slots may vary (spaces count)"),
        Issue("sender_id", "dlt_header",
              "a DLT header is 3–9 digits (promotional) or 3–9 letters (service); 'HERALD-1' is neither")]


@pytest.mark.parametrize("slot", [1, 2])
def test_dlt_fixed_text_in_a_slot_may_be_30_characters_not_31(slot):
    def body(fixed: str) -> str:
        parts = [fixed, "{{ vars.what }}"] if slot == 1 else ["{{ vars.d }}", fixed]
        return f"Sale {parts[0]} off on {parts[1]}. {{{{ optout }}}}"

    channel = Sms(DLT)
    assert channel.validate(sms(body("y" * 30), sender_id="567890"), message()) == []
    assert channel.validate(sms(body("y" * 31), sender_id="567890"), message()) == [Issue(
        "body", "dlt_var_too_long",
        f"{{#var#}} slot {slot} of template P1 holds 31 characters of fixed text; a variable carries at most 30")]


def test_dlt_a_template_without_variables_matches_its_exact_text():
    assert Sms(DLT).validate(sms("Your bill is paid. {{ optout }}", sender_id="HERALD"), message()) == []


def test_dlt_a_link_outside_a_slot_in_full():
    settings = {"dlt": {"templates": [{"id": "T1", "category": "promotional",
                                       "body": "Sale {#var#} at https://shop.example/sale Reply STOP to opt out"}]}}
    issues = Sms(settings).validate(sms("Sale {{ vars.d }} at https://shop.example/sale {{ optout }}",
                                        sender_id="567890"), message())
    assert issues == [Issue("body", "dlt_link_outside_var",
                            "the link https://shop.example/sale must sit inside a {#var#} slot of template T1")]


# --- rendered output: compliance in full ----------------------------------------------------------------

def rendered(channel: Sms, body: str, customer: Customer, **kw):
    msg = message(senders={"sms": {"sender_id": "HERALD"}}, **kw)
    ctx = context(channel, msg, customer)
    payload = channel.render(sms(body), ctx)
    return payload, channel.compliance(payload, ctx)


def test_rendered_opt_out_missing_and_too_long_in_full():
    channel = Sms({"max_segments": 1, "optout_text": "Txt STOP to 12345"})
    body = "{{ customer.first_name }}{% if customer.tier == 'gold' %} {{ optout }}{% endif %}"
    payload, issues = rendered(channel, body, Customer("c1", {"phone": "+919812345678", "first_name": "A" * 170,
                                                                  "tier": "silver"}))
    assert payload == {"to": "+919812345678", "from": "HERALD", "text": "A" * 170, "encoding": "GSM-7",
                       "units": 170, "segments": 2}
    assert issues == [Issue("text", "compliance", "the rendered text lacks the opt-out text 'Txt STOP to 12345'"),
                      Issue("text", "too_long", "the rendered text is 170 GSM-7 characters, 2 segments; the maximum is 1")]


def test_rendered_dlt_text_matching_no_template_in_full():
    channel = Sms(DLT)
    payload, issues = rendered(channel, "Hello {{ customer.first_name }}. {{ optout }}",
                               Customer("c1", {"phone": "9812345678", "first_name": "Asha"}))
    assert payload["dlt"] == {"entity_id": "1101234567890123456", "template_id": None}
    assert issues == [Issue("text", "dlt_template_mismatch", "the rendered text matches no registered DLT template "
                                                             "(customer data may not change the fixed text)")]


def test_rendered_dlt_variables_in_full_numbered_from_one():
    channel = Sms(DLT)
    body = "Sale {{ customer.first_name }} off on {{ customer.last_name }}. {{ optout }}"
    _, issues = rendered(channel, body, Customer("c1", {"phone": "9812345678", "first_name": "B" * 31,
                                                        "last_name": "C" * 32}))
    assert issues == [
        Issue("text", "dlt_var_too_long", f"{{#var#}} 1 of template P1 renders to 31 characters; at most 30: {'B' * 31!r}"),
        Issue("text", "dlt_var_too_long", f"{{#var#}} 2 of template P1 renders to 32 characters; at most 30: {'C' * 32!r}")]


def test_a_rendered_link_in_a_dlt_variable_counts_at_its_shortened_length_with_tiny_urls():
    channel = Sms(DLT)
    body = "Sale 5% off on {{ customer.link }}. {{ optout }}"
    link = "https://shop.example.com/summer/electronics/all"  # 47 characters, 23 once shortened
    customer = Customer("c1", {"phone": "9812345678", "link": link})
    assert [i.code for i in rendered(channel, body, customer)[1]] == ["dlt_var_too_long"]
    assert rendered(channel, body, customer, tiny_url=True)[1] == []


def test_the_sender_of_the_creative_wins_over_the_message_default():
    channel = Sms({})
    msg = message(senders={"sms": {"sender_id": "HERALD"}})
    ctx = context(channel, msg, Customer("c1", {"phone": "+919812345678"}))
    assert channel.render(sms("Hi {{ optout }}", sender_id="SHOP"), ctx)["from"] == "SHOP"
    assert channel.render(sms("Hi {{ optout }}"), ctx)["from"] == "HERALD"


# --- reachability reasons and sample creatives ----------------------------------------------------------

def test_the_trace_reason_names_dnd_a_bad_number_or_nothing():
    channel = Sms({})
    assert channel.reachability_reason(Customer("c1", {"phone": "+919812345678", "dnd": True}), message()) == (
        "on the do-not-disturb registry (customer.dnd) and the message does not send to DND")
    assert channel.reachability_reason(Customer("c1", {"phone": "+919812345678", "dnd": True}),
                                       message(send_to_dnd=True)) is None
    assert channel.reachability_reason(Customer("c2", {"phone": "+912212345678"}), message()) == (
        "phone '+912212345678' is malformed: a mobile number in international form (+ and country code); "
        "landlines, toll-free and premium numbers cannot take SMS")
    assert channel.reachability_reason(Customer("c3", {}), message()) == "no phone"


def test_the_sample_creatives_validate_and_render_compliant(registry: Registry, catalogue):
    channel = registry.channel("sms")
    (creative,) = sample_creatives(channel)
    msg = message(creative, senders={"sms": {"sender_id": "HERALD"}})
    assert validate_message(msg, registry, catalogue) == []
    ctx = context(channel, msg, Customer("c1", {"phone": "+919812345678", "first_name": "Asha"}))
    payload = channel.render(creative, ctx)
    assert payload["text"] == "Asha, summer sale: 20% off everything until Sunday. Reply STOP to opt out"
    assert channel.compliance(payload, ctx) == []


def test_rendered_opt_out_missing_and_a_dlt_mismatch_are_both_reported():
    channel = Sms(DLT)
    _, issues = rendered(channel, "Hello {{ customer.first_name }}.", Customer("c1", {"phone": "9812345678",
                                                                                    "first_name": "Asha"}))
    assert [i.code for i in issues] == ["compliance", "dlt_template_mismatch"]


def test_the_gateway_gets_the_number_in_e164_using_the_default_region():
    channel = Sms({"default_region": "IN"})
    payload, _ = rendered(channel, "Hi {{ optout }}", Customer("c1", {"phone": "098123 45678"}))
    assert payload["to"] == "+919812345678"


GENERIC = {"dlt": {"entity_id": "E1", "templates": [
    {"id": "P1", "category": "promotional", "body": "Sale {#var#} off on {#var#}. Reply STOP to opt out"},
    {"id": "G1", "category": "service_implicit", "body": "{#var#} Reply STOP to opt out"},
]}}


@pytest.mark.parametrize(("creative_id", "message_id", "expected"), [
    (None, None, "P1"),  # the first registered template the text matches
    ("G1", None, "G1"),  # the creative's template
    (None, "G1", "G1"),  # the message's delivery settings' template
    ("P1", "G1", "P1"),  # the creative's wins
])
def test_the_payload_names_the_dlt_template_the_creative_or_message_chose(creative_id, message_id, expected):
    channel = Sms(GENERIC)
    senders = {"sms": {"sender_id": "HERALD", **({"dlt_template_id": message_id} if message_id else {})}}
    ctx = context(channel, message(senders=senders), Customer("c1", {"phone": "+919812345678"}))
    content = {"dlt_template_id": creative_id} if creative_id else {}
    payload = channel.render(sms("Sale 5% off on shoes. {{ optout }}", **content), ctx)
    assert payload["dlt"] == {"entity_id": "E1", "template_id": expected}
    assert channel.compliance(payload, ctx) == []


# --- validation keeps every finding; settings that change what is counted or reached --------------------

def test_an_unknown_field_is_reported_with_the_sender_and_length_findings():
    creative = Creative("sms", content={"body": "x" * 150 + " {{ optout }}", "sender_id": "12", "colour": "red"})
    assert Sms({}).validate(creative, message()) == [
        Issue("colour", "unknown_key", "unknown SMS field 'colour'"),
        Issue("sender_id", "sender_id",
              "sender id '12': a numeric sender id is a 3–8 digit short code or a valid international long code"),
        Issue("body", "segments", "the body is about 172 GSM-7 characters: 2 segments, each billed", "warning")]


def test_in_dlt_mode_an_unknown_field_is_reported_with_the_length_and_template_findings():
    creative = Creative("sms", content={"body": "Sale {{ vars.d }} off on " + "y" * 140 + ". {{ optout }}",
                                        "sender_id": "567890", "colour": "red"})
    assert [(i.path, i.code) for i in Sms(DLT).validate(creative, message())] == [
        ("colour", "unknown_key"), ("body", "segments"), ("body", "dlt_var_too_long")]


def test_a_utf16_code_unit_at_the_edge_of_the_basic_plane_is_one_unit_and_beyond_it_two():
    assert Sms({}).validate(sms("\uffff" * 70 + "{{ optout }}"), message())[-1] == Issue(
        "body", "segments", "the body is about 91 UCS-2 characters: 2 segments, each billed", "warning")
    assert Sms({}).validate(sms("\U00010000" * 30 + "{{ optout }}"), message())[-1] == Issue(
        "body", "segments", "the body is about 81 UCS-2 characters: 2 segments, each billed", "warning")


def test_the_short_link_length_setting_is_the_length_a_tracked_link_counts_for():
    body = "See https://shop.example.com/summer-sale/electronics {{ optout }}"
    assert Sms({"short_link_length": 10}).estimated_text(body, message(tiny_url=True)) == (
        "See xxxxxxxxxx Reply STOP to opt out")


def test_the_default_region_reads_numbers_stored_without_a_country_code():
    local = Customer("c1", {"phone": "098123 45678"})
    assert Sms({"default_region": "IN"}).reachability_reason(local, message()) is None
    assert Sms({}).reachability_reason(local, message()).startswith("phone '098123 45678' is malformed")


def test_dlt_mode_without_templates_matches_no_body():
    assert [i.code for i in Sms({"dlt": {"entity_id": "E1"}}).validate(sms("Hi {{ optout }}", sender_id="HERALD"),
                                                                         message())] == ["dlt_template_mismatch"]


def test_settings_errors_name_the_setting_and_the_allowed_values():
    with pytest.raises(ValueError, match=r"^optout_text: must be a non-empty text, not ''$"):
        Sms({"optout_text": ""})
    with pytest.raises(ValueError, match=r"^dlt\.templates\[0\]\.category: must be one of promotional, service_explicit, "
                                         r"service_implicit, transactional, not 'marketing'$"):
        Sms({"dlt": {"templates": [{"id": "7", "category": "marketing", "body": "x"}]}})
