"""Sending: SendResult's three outcomes, the built-in channels' send through a transport, and
``engine.delivery.attempt`` (the one function delivery calls), which reports to observers."""

from __future__ import annotations

import asyncio
import types

import pytest

from engine import Creative, Customer, SendContext, SendResult, hookimpl
from engine.delivery import attempt
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.testing import FakeTransport, send_context
from plugins import DEFAULT_PLUGINS
from tests.plugins.channels.common import context, message

SMS = Creative("sms", content={"body": "Hi {{ customer.first_name }}, 20% off today. {{ optout }}"})
ANA = Customer("ana", {"phone": "+14155550123", "first_name": "Ana", "email": "ana@example.com"})


def observed(seen: list) -> Registry:
    obs = types.ModuleType("obs")
    obs.engine_event = hookimpl(lambda event: seen.append(event))
    return Registry.build(make_plugin_manager((*DEFAULT_PLUGINS, obs), entry_points=False))


def sms_payload(registry: Registry) -> dict:
    sms = registry.channel("sms")
    return dict(sms.render(SMS, context(sms, message(SMS), ANA)))


def test_send_result_has_three_outcomes_each_with_what_it_needs():
    assert SendResult.accepted("wamid.1").ok
    assert SendResult.transient("throttled", 2.5).retry_after == 2.5
    assert SendResult.permanent("barred").outcome == "permanent"
    with pytest.raises(ValueError, match="provider's id"):
        SendResult.accepted("")
    with pytest.raises(ValueError, match="needs a reason"):
        SendResult.permanent("")
    with pytest.raises(ValueError, match="retry_after"):
        SendResult("permanent", reason="barred", retry_after=3)
    with pytest.raises(ValueError, match="retry_after"):
        SendResult.transient("slow", -1)


def test_only_a_permanent_error_marks_the_recipient_unreachable():
    assert SendResult.permanent("invalid number", unreachable=True).unreachable
    assert not SendResult.permanent("bad credentials").unreachable  # the sender's fault, not the address's
    assert not SendResult.transient("timeout").unreachable
    with pytest.raises(ValueError, match="unreachable"):
        SendResult("transient", reason="timeout", unreachable=True)


def test_sms_send_builds_one_request_from_the_rendered_payload(registry):
    payload = sms_payload(registry)
    transport = FakeTransport(SendResult.accepted("smsc-77"))
    ctx = SendContext("summer-sale", "run-1", "ana", {"account": "acme"}, transport)
    result = asyncio.run(registry.channel("sms").send(payload, ctx))
    assert result == SendResult.accepted("smsc-77")
    (request,) = transport.requests
    assert (request.channel, request.to, request.body) == ("sms", "+14155550123", payload)
    assert request.body["text"] == "Hi Ana, 20% off today. Reply STOP to opt out"
    assert request.idempotency_key == SendContext("summer-sale", "run-1", "ana").idempotency_key
    assert dict(request.settings) == {"account": "acme"}


def test_without_a_transport_a_send_is_a_permanent_error_not_a_fake_success(registry):
    result = asyncio.run(registry.channel("sms").send(sms_payload(registry), send_context("ana")))
    assert result == SendResult.permanent("no transport configured for channel sms")


def test_a_payload_without_a_recipient_is_refused_before_the_transport(registry):
    transport = FakeTransport()
    payload = {**sms_payload(registry), "to": None}
    result = asyncio.run(registry.channel("sms").send(payload, send_context("ana", transport)))
    assert result.outcome == "permanent" and "names no recipient" in result.reason
    assert transport.requests == []


def test_attempt_reports_the_send_to_observers_and_returns_the_outcome():
    seen: list = []
    registry = observed(seen)
    transport = FakeTransport(SendResult.transient("429 too many requests", 30))
    result = asyncio.run(attempt(registry.channel("sms"), sms_payload(registry), send_context("ana", transport), registry))
    assert result == SendResult.transient("429 too many requests", 30)
    assert [e.kind for e in seen] == ["send_attempted", "send_finished"]
    assert seen[0].customer == "ana" and seen[0].detail["channel"] == "sms"
    assert seen[1].detail["outcome"] == "transient" and seen[1].detail["retry_after"] == 30
    assert seen[0].detail["idempotency_key"] == transport.requests[0].idempotency_key


class Flaky:
    """A channel whose send raises, or answers something that is not a SendResult."""

    name = "flaky"

    def __init__(self, answer):
        self.answer = answer

    async def send(self, payload, ctx):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_attempt_turns_a_raising_send_into_a_transient_error_and_a_wrong_answer_into_a_permanent_one(caplog):
    seen: list = []
    registry = observed(seen)
    raised = asyncio.run(attempt(Flaky(TimeoutError("read timed out")), {}, send_context(), registry))
    assert raised == SendResult.transient("flaky.send raised TimeoutError: read timed out")
    assert "flaky: send failed" in caplog.text
    wrong = asyncio.run(attempt(Flaky({"ok": True}), {}, send_context(), registry))
    assert wrong == SendResult.permanent("flaky.send returned dict, not a SendResult")
    assert [e.detail["outcome"] for e in seen if e.kind == "send_finished"] == ["transient", "permanent"]


@pytest.mark.parametrize(("channel", "address"), [
    ("email", "ana.silva@example.com"), ("push", "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqxA8k"),
    ("line", "U4af4980629a1b2c3d4e5f60718293a4b"), ("wechat", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
    ("whatsapp", "14155550123"), ("call_task", "+14155550123"), ("viber", "01234567890A=Bc9xYz"),
])
def test_each_channel_sends_to_the_recipient_its_payload_names(registry, channel, address):
    from engine.testing import FULL_CONTACT, kit_message, sample_creatives

    ch = registry.channel(channel)
    creative = sample_creatives(ch)[0]
    msg = kit_message(channel, [creative])
    payload = ch.render(msg.creatives[0], context(ch, msg, Customer("ana", dict(FULL_CONTACT))))
    transport = FakeTransport()
    assert asyncio.run(ch.send(payload, send_context("ana", transport))) == SendResult.accepted("fake-1")
    assert transport.requests[0].to == address


def test_an_ad_channel_sends_one_audience_member_as_the_platform_request(registry):
    ch = registry.channel("google")
    msg = message(Creative("google", content={"audience_name": "Summer"}))
    payload = ch.render(msg.creatives[0], context(ch, msg, ANA))
    transport = FakeTransport()
    asyncio.run(ch.send(payload, send_context("ana", transport)))
    (request,) = transport.requests
    assert request.to == "Summer" and request.body["audience"] == "Summer"
    assert request.body["operations"][0]["create"]["userIdentifiers"][0]["hashedEmail"] == payload["identifiers"]["email"]
    nobody = asyncio.run(ch.send({"audience": "Summer", "identifiers": {"email": None, "phone": None}},
                                 send_context("ana", transport)))
    assert nobody.outcome == "permanent" and len(transport.requests) == 1
