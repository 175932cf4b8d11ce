"""Mobile push: title/body limits, image, deep link scheme, platform fields, FCM HTTP v1 payload."""

from __future__ import annotations

from engine import Creative, Customer
from engine.validation import validate_message
from plugins.channels.push import Push
from tests.plugins.channels.common import codes, context, message

TOKEN = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
CONTENT = {"title": "Summer sale is live", "body": "{{ customer.first_name | default: 'Hi' }}, 20% off today only",
           "image": "https://cdn.herald.example/summer.png", "deep_link": "https://shop.example/sale",
           "android": {"channel_id": "offers", "priority": "high", "ttl": 86400, "color": "#FF6600"},
           "ios": {"badge": 1, "sound": "default", "thread_id": "summer"}}


def push(**content):
    return Creative("push", content={**CONTENT, **content})


def test_a_real_creative_passes(registry, catalogue):
    assert validate_message(message(push()), registry, catalogue) == []


def test_title_and_body_are_required_and_limited():
    channel = Push({})
    assert codes(channel.validate(push(title=""), message())) == {"title": "required"}
    (issue,) = channel.validate(push(body="x" * 241), message())
    assert (issue.path, issue.code) == ("body", "too_long") and "240" in issue.message
    assert codes(Push({"title_max": 10}).validate(push(), message())) == {"title": "too_long"}


def test_image_must_be_https():
    (issue,) = Push({}).validate(push(image="http://cdn.herald.example/summer.png"), message())
    assert (issue.path, issue.code) == ("image", "https_required")


def test_deep_link_scheme_must_be_allowed():
    (issue,) = Push({}).validate(push(deep_link="myapp://offers/summer"), message())
    assert issue.path == "deep_link" and "'myapp'" in issue.message
    assert codes(Push({"deep_link_schemes": ["https", "myapp"]}).validate(push(deep_link="myapp://offers/summer"), message())) == {}
    danger = Push({"deep_link_schemes": ["https", "javascript"]}).validate(push(deep_link="javascript:alert(1)"), message())
    assert codes(danger) == {"deep_link": "deep_link_scheme"}


def test_platform_fields_are_checked():
    issues = Push({}).validate(push(android={"priority": "urgent", "ttl": 10**8, "color": "orange", "vibrate": True},
                                    ios={"badge": "one"}), message())
    assert codes(issues) == {"android.priority": "enum", "android.ttl": "range", "android.color": "format",
                             "android.vibrate": "unknown_key", "ios.badge": "type"}


def test_data_values_are_strings_and_reserved_keys_refused():
    assert codes(Push({}).validate(push(data={"offer": 20}), message())) == {"data": "type"}
    assert codes(Push({}).validate(push(data={"google.sent_time": "1"}), message())) == {"data.google.sent_time": "reserved_key"}


def test_oversized_payload_is_refused():
    issues = Push({"body_max": 10_000}).validate(push(body="x" * 5000), message())
    assert codes(issues) == {"body": "payload_too_large"}


def test_render_is_an_fcm_v1_request():
    channel = Push({})
    ctx = context(channel, message(push()), Customer("c1", {"push_token": TOKEN, "first_name": "Asha"}))
    body = channel.render(push(data={"offer_id": "S20"}), ctx)
    assert body == {"message": {
        "token": TOKEN,
        "notification": {"title": "Summer sale is live", "body": "Asha, 20% off today only",
                         "image": "https://cdn.herald.example/summer.png"},
        "data": {"offer_id": "S20", "deep_link": "https://shop.example/sale"},
        "android": {"priority": "high", "ttl": "86400s",
                    "notification": {"channel_id": "offers", "color": "#FF6600", "click_action": "OPEN_DEEP_LINK"}},
        "apns": {"headers": {"apns-priority": "10"}, "fcm_options": {"image": "https://cdn.herald.example/summer.png"},
                 "payload": {"aps": {"badge": 1, "sound": "default", "thread-id": "summer", "mutable-content": 1}}},
    }}


def test_minimal_render_has_no_empty_sections():
    channel = Push({})
    creative = Creative("push", content={"title": "Hi", "body": "Sale"})
    body = channel.render(creative, context(channel, message(creative), Customer("c1", {"push_token": TOKEN})))
    assert "data" not in body["message"] and "notification" not in body["message"]["android"]
