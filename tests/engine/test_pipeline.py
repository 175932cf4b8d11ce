"""The evaluation pipeline on the sample message: decisions, traces, rendering, summary, determinism."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import Customer, Schedule
from engine.run import evaluate
from tests.conftest import AT, EXAMPLES

GOLD = {"tier": "gold", "affinities": ["electronics"], "timezone": "Asia/Kolkata", "phone": "+919812345678",
        "email": "asha@example.com", "first_name": "Asha", "last_purchase_date": "2026-05-01", "fraud_score": 0.1,
        "lifetime_value": 50.0}


@pytest.fixture
def message(herald):
    return herald.load_message(EXAMPLES / "summer-sale.message.yaml")


def decide(message, registry, attrs, *, at=AT, **kw):
    return evaluate(message, [Customer("c1", attrs)], at=at, registry=registry, **kw)[0]


def test_gold_customer_in_the_evening_gets_the_evening_variant_by_sms(message, registry):
    d = decide(message, registry, GOLD)  # sent at 13:30 UTC: 19:00 in Kolkata
    assert (d.included, d.variant, d.channel, d.fallbacks) == (True, "gold_evening", "sms", ("email",))
    assert d.fired == {"summer-sale-eligibility": (), "summer-sale-personalization": ("gold-electronics-evening",),
                       "summer-sale-channels": ("default",)}
    assert d.rules_versions == {rs.name: rs.version for rs in message.rulesets.values()}
    assert d.incentive["code"] and d.incentive["preview"] is True


def test_time_rules_use_the_customers_local_time(message, registry):
    from dataclasses import replace

    later = replace(message, schedule=Schedule("at", datetime(2026, 7, 4, 14, 0, tzinfo=UTC)))
    in_tokyo = decide(later, registry, {**GOLD, "timezone": "Asia/Tokyo"})  # sent at 23:00 there
    assert in_tokyo.variant == "gold"
    assert decide(later, registry, GOLD).variant == "gold_evening"  # 19:30 in Kolkata


def test_eligibility_rules_exclude_with_their_reason(message, registry):
    d = decide(message, registry, {**GOLD, "fraud_score": 0.95}, explain=True)
    assert (d.included, d.excluded_reason, d.channel, d.variant) == (False, "fraud_risk", None, None)
    assert d.trace[-1].event == "excluded" and d.trace[-1].detail["rule"] == "high-fraud-score"


def test_blocked_customers_are_excluded(message, registry):
    assert decide(message, registry, {**GOLD, "blocked": True}).excluded_reason == "blocked"


def test_unreachable_channels_are_dropped_with_the_reason(message, registry):
    attrs = {**GOLD, "subscription.sms": "unsubscribed"}
    d = decide(message, registry, attrs, explain=True)
    assert (d.channel, d.fallbacks) == ("email", ())
    dropped = [t.detail for t in d.trace if t.event == "channel_dropped"]
    assert dropped == [{"channel": "sms", "why": "unsubscribed", "reason": "subscription.sms is recorded as 'unsubscribed'"}]


def test_dnd_blocks_sms_unless_the_message_allows_it(message, registry):
    assert decide(message, registry, {**GOLD, "dnd": True}).channel == "email"
    from dataclasses import replace

    allowed = replace(message, delivery=replace(message.delivery, send_to_dnd=True))
    assert decide(allowed, registry, {**GOLD, "dnd": True}).channel == "sms"


def test_nobody_reachable_means_excluded(message, registry):
    d = decide(message, registry, {k: v for k, v in GOLD.items() if k not in ("phone", "email")})
    assert (d.included, d.excluded_reason) == (False, "no_reachable_channel")


def test_rule_chosen_channel_order_wins(message, registry):
    d = decide(message, registry, {**GOLD, "lifetime_value": 5000.0})
    assert (d.channel, d.fallbacks) == ("email", ("sms",))


def test_render_produces_the_provider_payload_with_incentive_and_vars(message, registry):
    d = decide(message, registry, GOLD, render=True)
    payload = d.rendered["payload"]
    assert d.rendered["channel"] == "sms"
    assert payload["to"] == "+919812345678" and payload["from"] == "HERALD"
    assert payload["text"].startswith("Asha, tonight only: 25% off electronics. Code ")
    assert d.incentive["code"] in payload["text"] and payload["text"].endswith("Reply STOP to opt out")


def test_an_undefined_template_variable_drops_that_channel_for_that_recipient(herald, registry, tmp_path):
    text = (EXAMPLES / "summer-sale.message.yaml").read_text()
    text = text.replace("{{ customer.first_name | default: 'Hi' }}, tonight", "{{ customer.first_name }}, tonight")
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    (tmp_path / "m.message.yaml").write_text(text)
    msg = herald.load_message(tmp_path / "m.message.yaml")
    attrs = {k: v for k, v in GOLD.items() if k != "first_name"}
    d = decide(msg, registry, attrs, render=True, explain=True)
    assert d.channel == "email" and d.rendered["channel"] == "email"
    (drop,) = [t for t in d.trace if t.event == "channel_dropped"]
    assert drop.detail["why"] == "template_error" and "first_name" in drop.detail["error"]


def test_summary_counts_channels_variants_reasons_and_cost(message, registry, herald):
    customers = [Customer("a", GOLD), Customer("b", {**GOLD, "fraud_score": 0.9}),
                 Customer("c", {**GOLD, "subscription.sms": "hard_bounced"}), Customer("d", {"timezone": "UTC"})]
    run = herald.evaluate(message, customers, at=AT)
    list(run)
    s = run.summary().as_dict()
    assert s["total"] == 4 and s["included"] == 2
    assert s["channels"] == {"email": 1, "sms": 1}
    assert s["exclusion_reasons"] == {"dormant": 1, "fraud_risk": 1}
    costs = registry.channels["sms"].obj.cost + registry.channels["email"].obj.cost
    assert s["estimated_cost"] == pytest.approx(costs)


def test_evaluation_is_deterministic_and_evaluators_agree(message, registry):
    customers = [Customer(f"c{i}", {**GOLD, "tier": t, "timezone": z}) for i, (t, z) in enumerate(
        [("gold", "Asia/Tokyo"), ("silver", "Europe/London"), ("bronze", "America/New_York"), ("gold", "UTC")])]
    runs = [[d.as_dict() for d in evaluate(message, customers, at=AT, registry=registry, evaluator=e, explain=True)]
            for e in ("compiled", "compiled", "reference", "durable")]
    assert runs[0] == runs[1] == runs[2] == runs[3]


def test_send_at_is_the_scheduled_time(message, registry):
    assert decide(message, registry, GOLD).send_at == message.schedule.at


def test_decisions_serialise_to_json_ready_dicts(message, registry):
    import json

    d = decide(message, registry, GOLD, explain=True, render=True)
    data = json.loads(json.dumps(d.as_dict()))
    assert set(data) >= {"customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "incentive",
                         "rendered", "send_at", "rules_versions", "trace"}
    assert data["trace"][0]["step"] == "eligibility"


def test_recipients_beyond_a_coupon_cap_are_excluded_not_the_whole_run(message, registry):
    from dataclasses import replace

    from engine.model import IncentiveSpec

    capped = replace(message, incentive=IncentiveSpec("coupon", {"source": "generated", "length": 8, "cap": 2,
                                                                 "series": "cap-test-pipeline"}))
    customers = [Customer(f"c{i}", GOLD) for i in range(4)]
    decisions = evaluate(capped, customers, at=AT, registry=registry, preview=False, explain=True)
    assert [d.included for d in decisions] == [True, True, False, False]
    assert decisions[2].excluded_reason == "incentive_unavailable"
    assert "reached its cap of 2" in decisions[2].trace[-1].detail["error"]
