"""Rendering on demand (``engine.rendering.render_for``): any channel of a decision — the chosen one or a
fallback — rendered after evaluation, as delivery does when a send on the first channel fails."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from engine import Campaign, Creative, Customer, EngineError, IncentiveSpec, Message
from engine.rendering import render_for
from engine.run import evaluate

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
CAMPAIGN = Campaign("summer-2026", "Summer 2026", date(2026, 6, 1), date(2026, 8, 31))
SMS = Creative("sms", content={"body": "Code {{ coupon.code }}. {{ optout }}"})
EMAIL = Creative("email", content={
    "subject": "{{ customer.first_name }}, your code {{ coupon.code }}",
    "html": "<p>{{ vars.discount }} off with {{ coupon.code }}</p><a href=\"{{ unsubscribe_url }}\">unsubscribe</a>",
    "text": "{{ vars.discount }} off with {{ coupon.code }}. Unsubscribe: {{ unsubscribe_url }}"})
MESSAGE = Message("summer-sale", "Summer sale", CAMPAIGN, channels=("sms", "email"), creatives=(SMS, EMAIL),
                  incentive=IncentiveSpec("coupon", {"length": 8, "expiry": {"days": 14}}))
ANA = Customer("ana", {"phone": "+14155550123", "email": "ana@example.com", "first_name": "Ana"})


def test_a_fallback_channel_renders_on_demand_from_the_decision(registry):
    (decision,) = evaluate(MESSAGE, [ANA], at=AT, registry=registry, render=True, preview=False)
    assert (decision.channel, decision.fallbacks, decision.rendered["channel"]) == ("sms", ("email",), "sms")
    code = decision.incentive["code"]
    out = render_for(MESSAGE, decision, "email", registry, customer=ANA, vars={"discount": "20%"})
    assert out.ok and out.payload["to"] == "ana@example.com"
    assert out.payload["subject"] == f"Ana, your code {code}"  # the incentive the decision reserved
    assert out.payload["text"].startswith(f"20% off with {code}.")
    again = render_for(MESSAGE, decision, "sms", registry, customer=ANA)
    assert again.payload == decision.rendered["payload"]  # the first channel renders as the pipeline did


def test_a_rendering_that_breaks_compliance_says_so_instead_of_a_payload(registry):
    bad = Customer("bad", {**ANA.attributes, "first_name": "Ana\nBcc: all@example.com"})
    (decision,) = evaluate(MESSAGE, [bad], at=AT, registry=registry)
    unset = render_for(MESSAGE, decision, "email", registry, customer=bad)  # the vars it was decided with are missing
    assert (unset.ok, unset.payload, unset.failure) == (False, None, "template_error") and "discount" in unset.error
    out = render_for(MESSAGE, decision, "email", registry, customer=bad, vars={"discount": "20%"})
    assert (out.ok, out.payload, out.failure) == (False, None, "compliance")
    assert "subject" in {i.path for i in out.problems}
    real = render_for(MESSAGE, decision, "email", registry, customer=Customer("bad", dict(ANA.attributes)),
                      vars={"discount": "20%"}, preview=False)  # a real send needs a signed unsubscribe link
    assert real.failure == "compliance" and "unsubscribe_unsigned" in {i.code for i in real.problems}


def test_render_for_refuses_what_it_cannot_render(registry):
    homeless = Customer("homeless")
    (excluded,) = evaluate(MESSAGE, [homeless], at=AT, registry=registry)
    with pytest.raises(EngineError, match="excluded"):
        render_for(MESSAGE, excluded, "sms", registry, customer=homeless)
    (decision,) = evaluate(MESSAGE, [ANA], at=AT, registry=registry)
    with pytest.raises(EngineError, match="needs that customer"):
        render_for(MESSAGE, decision, "email", registry)
    with pytest.raises(EngineError, match="no creative for channel 'push'"):
        render_for(MESSAGE, decision, "push", registry, customer=ANA)
