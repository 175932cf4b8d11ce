"""Reachability of every built-in channel: the standard states, and the columnar expression agreeing with
``reachability`` row by row (nulls and missing columns included)."""

from __future__ import annotations

import pytest

from engine import Customer, Reachability
from engine.model import SUBSCRIPTION_STATUSES
from tests.plugins.channels.common import columnar_statuses, message, row_statuses

LINE_ID = "U" + "4af4980629" * 3 + "ab"
TOKEN = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
HANDLES = {  # channel → (contact attribute, a valid handle, a malformed handle)
    "sms": ("phone", "+919812345678", "+91123"),
    "email": ("email", "asha@example.com", "asha@@example"),
    "push": ("push_token", TOKEN, "not a token"),
    "line": ("line_id", LINE_ID, "asha-on-line"),
    "viber": ("viber_id", "01234567890A=", "has space"),
    "wechat": ("wechat_openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "bad id!"),
    "whatsapp": ("whatsapp", "+919812345678", "12"),
    "call_task": ("phone", "+14155552671", "555"),
    "facebook": ("email", "asha@example.com", "nope"),
    "google": ("phone", "+919812345678", "00"),
}
SUBSCRIPTION = {"call_task": "call_task"}


@pytest.mark.parametrize("name", sorted(HANDLES))
def test_standard_states(registry, name):
    channel = registry.channel(name)
    attr, good, bad = HANDLES[name]
    sub = f"subscription.{SUBSCRIPTION.get(name, name)}"
    msg = message()

    def status(**attrs):
        return channel.reachability(Customer("c1", attrs), msg)

    assert status() is Reachability.CONTACT_UNAVAILABLE
    assert status(**{attr: ""}) is Reachability.CONTACT_UNAVAILABLE
    assert status(**{attr: good}) is Reachability.VALID  # nothing recorded counts as reachable
    assert status(**{attr: good, sub: "no-such-status"}) is Reachability.INVALID  # an unknown status never does
    assert status(**{attr: bad}) is Reachability.INVALID
    for recorded in map(Reachability, SUBSCRIPTION_STATUSES):
        if recorded is not Reachability.CONTACT_UNAVAILABLE:
            assert status(**{attr: good, sub: recorded.value}) is recorded
    assert status(**{attr: good, sub: "dnd"}) is Reachability.INVALID  # DND is a flag, not a recorded status
    # what the record says about consent or bounces outranks a malformed handle
    assert status(**{attr: bad, sub: "unsubscribed"}) is Reachability.UNSUBSCRIBED
    assert status(**{attr: bad, sub: "subscribed"}) is Reachability.INVALID
    assert status(**{attr: good, sub: "soft_bounced"}).reachable
    assert not status(**{attr: good, sub: "hard_bounced"}).reachable


def test_dnd_blocks_sms_unless_the_message_sends_to_dnd(registry):
    sms = registry.channel("sms")
    on_dnd = Customer("c1", {"phone": "+919812345678", "dnd": True})
    assert sms.reachability(on_dnd, message()) is Reachability.DND
    assert sms.reachability(on_dnd, message(send_to_dnd=True)) is Reachability.VALID
    assert sms.reachability(Customer("c2", {"phone": "+919812345678", "dnd": False}), message()) is Reachability.VALID
    # DND is an SMS rule: e-mail and call tasks still reach the customer
    assert registry.channel("email").reachability(Customer("c3", {"email": "a@example.com", "dnd": True}), message()).reachable


def test_sms_needs_a_number_that_can_take_texts(registry):
    sms = registry.channel("sms")
    landline = Customer("c1", {"phone": "+442079460000"})  # a London fixed line
    assert sms.reachability(landline, message()) is Reachability.INVALID
    assert registry.channel("call_task").reachability(landline, message()) is Reachability.VALID


def test_ad_channels_match_on_email_or_phone(registry):
    google = registry.channel("google")
    assert google.reachability(Customer("c1", {"phone": "+919812345678"}), message()) is Reachability.VALID
    assert google.reachability(Customer("c2", {"email": "x@example.com", "phone": "bad"}), message()) is Reachability.VALID
    assert google.reachability(Customer("c3", {"email": "bad", "phone": "bad"}), message()) is Reachability.INVALID
    assert google.reachability(Customer("c4", {"push_token": TOKEN}), message()) is Reachability.CONTACT_UNAVAILABLE


def _population() -> list[Customer]:
    people = []
    statuses = [None, "subscribed", "unsubscribed", "hard_bounced", "soft_bounced", "invalid", "valid",
                "unable_to_verify", "contact_unavailable", "garbage"]
    i = 0
    for name, (attr, good, bad) in HANDLES.items():
        sub = f"subscription.{SUBSCRIPTION.get(name, name)}"
        for handle in (None, "", good, bad):
            for st in statuses:
                for dnd in (None, True, False):
                    attrs = {attr: handle, sub: st, "dnd": dnd}
                    if handle == good and dnd is False:  # a handle the audience reader marked malformed
                        attrs[f"handle_error.{attr}"] = f"{attr} {good!r} is malformed"
                    people.append(Customer(f"c{i}", {k: v for k, v in attrs.items() if v is not None}))
                    i += 1
    return people


@pytest.mark.parametrize("send_to_dnd", [False, True])
def test_reachability_expr_equals_reachability_row_by_row(registry, send_to_dnd):
    people = _population()
    msg = message(send_to_dnd=send_to_dnd)
    for name, reg in registry.channels.items():
        channel = reg.obj
        assert columnar_statuses(channel, msg, people) == row_statuses(channel, msg, people), name


def test_reachability_expr_works_when_the_frame_lacks_the_columns(registry):
    people = [Customer("c1", {"tier": "gold"}), Customer("c2", {})]
    for name, reg in registry.channels.items():
        assert columnar_statuses(reg.obj, message(), people) == ["contact_unavailable"] * 2, name
