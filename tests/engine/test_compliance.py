"""Compliance proven on what is sent: the pipeline checks every rendered payload, drops a channel that fails
(reason ``compliance``, the trace says what was wrong) and tries the next; load-time template checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import Campaign, Creative, Customer, DeliverySettings, Message
from engine.errors import MessageFileError
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.rendering import compliance_issues
from engine.run import evaluate
from plugins import DEFAULT_PLUGINS
from tests.conftest import EXAMPLES

AT = datetime(2026, 7, 1, tzinfo=UTC)
SENDERS = {"sms": {"sender_id": "HERALD"}, "email": {"from": "offers@herald.example"}}
CONDITIONAL_SMS = Creative("sms", content={"body": "Sale! {% if customer.tier == 'gold' %}{{ optout }}{% endif %}"})
EMAIL = Creative("email", content={"subject": "Hi {{ customer.first_name }}",
                                   "html": '<p>Sale</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'})
PERSON = {"phone": "+919812345678", "email": "asha@example.com", "tier": "silver", "first_name": "Asha"}


def unchecked(*creatives: Creative) -> Message:
    """A message built in code, so it never went through the load checks (as a buggy client could)."""
    return Message("m1", "Sale", Campaign("c1", "C"), channels=tuple(c.channel for c in creatives), creatives=creatives,
                   delivery=DeliverySettings(senders=SENDERS))


def decide(message, registry, attrs, **kw):
    return evaluate(message, [Customer("c1", attrs)], at=AT, registry=registry, render=True, explain=True, **kw)[0]


def drops(decision):
    return [t.detail for t in decision.trace if t.event == "channel_dropped"]


def test_an_sms_without_the_opt_out_text_loses_the_channel_and_the_next_one_is_used(registry):
    d = decide(unchecked(CONDITIONAL_SMS, EMAIL), registry, PERSON)
    assert (d.included, d.channel, d.rendered["channel"]) == (True, "email", "email")
    (drop,) = drops(d)
    assert drop["channel"] == "sms" and drop["why"] == "compliance"
    assert drop["problems"][0]["code"] == "compliance" and "Reply STOP to opt out" in drop["problems"][0]["message"]


def test_the_same_creative_passes_for_a_recipient_whose_rendering_has_the_text(registry):
    d = decide(unchecked(CONDITIONAL_SMS, EMAIL), registry, {**PERSON, "tier": "gold"})
    assert d.rendered["channel"] == "sms" and d.rendered["payload"]["text"].endswith("Reply STOP to opt out")


def test_a_recipient_every_channel_fails_is_excluded_for_compliance(registry):
    d = decide(unchecked(CONDITIONAL_SMS), registry, PERSON)
    assert (d.included, d.excluded_reason) == (False, "compliance")


def test_a_line_break_in_a_header_drops_e_mail_and_the_trace_says_header_injection(registry):
    d = decide(unchecked(EMAIL), registry, {**PERSON, "first_name": "Asha\r\nBcc: everyone@example.com"})
    assert (d.included, d.excluded_reason) == (False, "compliance")
    (drop,) = drops(d)
    assert drop["why"] == "compliance" and [p["code"] for p in drop["problems"]] == ["header_injection"]
    assert drop["problems"][0]["path"] == "subject"


def test_a_real_run_without_an_unsubscribe_secret_refuses_e_mail(registry):
    preview = decide(unchecked(EMAIL), registry, PERSON)
    assert preview.rendered["channel"] == "email" and "t=unsigned" in preview.rendered["payload"]["html"]
    real = decide(unchecked(EMAIL), registry, PERSON, preview=False)
    assert real.excluded_reason == "compliance" and drops(real)[0]["problems"][0]["code"] == "unsubscribe_unsigned"
    signed = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False),
                            {"plugins.channels.email": {"unsubscribe_secret": "org-secret-0123456789"}})
    assert decide(unchecked(EMAIL), signed, PERSON, preview=False).rendered["channel"] == "email"


def test_whatsapp_parameters_from_customer_data_are_rechecked(registry):
    wa = Creative("whatsapp", content={"name": "sale", "language": "en", "category": "marketing",
                                       "body": "Hi {{1}}!", "parameters": ["{{ customer.first_name }}"]})
    d = decide(unchecked(wa), registry, {**PERSON, "whatsapp": "+919812345678", "first_name": "Asha\nK"})
    assert d.excluded_reason == "compliance" and drops(d)[0]["problems"][0]["code"] == "whatsapp_parameter"


class Shout:
    """A third-party channel without a ``compliance`` method: the pipeline checks its required tag values."""

    name, kind, cost = "shout", "direct", 0.0
    creative_schema: dict = {}
    tags = {"optout": "Say STOP"}
    required_tags = ("optout",)

    def render(self, creative, context):
        return {"message": {"text": "hello"}}


def test_channels_without_their_own_check_must_contain_their_required_tag_values():
    (issue,) = compliance_issues(Shout(), {"message": {"text": "hello"}}, {})
    assert (issue.path, issue.code) == ("optout", "compliance") and "Say STOP" in issue.message
    assert compliance_issues(Shout(), {"message": {"text": "hello. Say STOP"}}, {}) == []


# --- load-time checks on message files ------------------------------------------------------------------

@pytest.fixture
def write(tmp_path):
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())

    def _write(old, new):
        text = (EXAMPLES / "summer-sale.message.yaml").read_text()
        assert old in text
        path = tmp_path / "m.message.yaml"
        path.write_text(text.replace(old, new, 1))
        return path

    return _write


def problems(herald, path):
    with pytest.raises(MessageFileError) as info:
        herald.load_message(path)
    return [str(p) for p in info.value.problems]


def test_a_var_no_rule_sets_is_a_load_error(herald, write):
    (msg,) = problems(herald, write("tonight only: {{ vars.discount }}", "tonight only: {{ vars.percent }}"))
    assert "creatives[0].content.body: unknown tag {{ vars.percent }}: no rule of this message sets 'percent'" in msg


def test_a_var_set_by_a_rule_is_accepted(herald):
    assert herald.load_message(EXAMPLES / "summer-sale.message.yaml").id == "summer-sale-2026"


def test_an_unknown_filter_is_a_load_error_with_its_position(herald, write):
    (msg,) = problems(herald, write("{{ customer.first_name | default: 'Hi' }}, tonight",
                                    "{{ customer.first_name | frobnicate }}, tonight"))
    assert "creatives[0].content.body: unknown filter 'frobnicate' (line 1, column 26)" in msg


def test_a_conditional_opt_out_is_a_load_error(herald, write):
    (msg,) = problems(herald, write("Code {{ coupon.code }}. {{ optout }}",
                                    "Code {{ coupon.code }}. {% if customer.tier == 'gold' %}{{ optout }}{% endif %}"))
    assert "creatives[0].content.body: {{ optout }} must be output unconditionally, not inside {% if %}" in msg
