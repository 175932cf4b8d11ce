"""The per-recipient fast path decides exactly as before: ``Herald.prepare(...).decide`` equals a
one-recipient ``evaluate``; the inlined contact reachability follows the documented order; traces (with the
reachability reasons) are unchanged; compiled functions are shared by ruleset object, never by name."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import ContactReach, ContactReachability, Customer, Reachability, ordered_reachability
from engine.contracts import is_active
from engine.errors import ModeError
from engine.evaluators.compiled import CompiledEvaluator
from engine.rulefiles.ir import Cmp, Rule, Ruleset

from ..conftest import AT, EXAMPLES

MESSAGE = EXAMPLES / "summer-sale.message.yaml"
TIERS = [None, "bronze", "silver", "gold", "platinum"]
STATUSES = [None, "subscribed", "unsubscribed", "hard_bounced", "soft_bounced", "garbage"]


def people(n: int, seed: int = 3) -> list[Customer]:
    """Customers with every kind of value the sample rules and channels look at (missing ones left out)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        attrs = {"tier": rnd.choice(TIERS), "timezone": rnd.choice([None, "Asia/Kolkata", "Pacific/Apia", "bad/zone"]),
                 "lifetime_value": rnd.choice([None, 12.5, 2500.0]), "fraud_score": rnd.choice([None, 0.01, 0.95]),
                 "last_purchase_date": rnd.choice([None, "2026-01-14", "2026-06-30"]),
                 "phone": rnd.choice([None, "", "+919812345678", "+1555"]),
                 "email": rnd.choice([None, "", f"u{i}@example.com", "bad@"]),
                 "subscription.sms": rnd.choice(STATUSES), "subscription.email": rnd.choice(STATUSES),
                 "dnd": rnd.choice([None, True, False])}
        if attrs["phone"] == "+1555" and rnd.random() < 0.5:
            attrs["handle_error.phone"] = "phone '+1555' is not a valid number"
        out.append(Customer(f"p{i}", {k: v for k, v in attrs.items() if v is not None}))
    return out


@pytest.mark.parametrize("explain", [False, True])
def test_a_prepared_message_decides_as_a_one_recipient_run(herald, explain):
    message = herald.load_message(MESSAGE)
    prepared = herald.prepare(message, at=AT, explain=explain)
    for customer in people(300):
        (expected,) = herald.evaluate(message, [customer], at=AT, mode="per_recipient", explain=explain)
        assert prepared.decide(customer).as_dict() == expected.as_dict()


def test_prepare_refuses_a_bulk_only_evaluator(herald):
    with pytest.raises(ModeError, match="runs only in bulk"):
        herald.prepare(herald.load_message(MESSAGE), at=AT, evaluator="columnar")


def test_a_one_recipient_run_still_has_its_summary(herald):
    message = herald.load_message(MESSAGE)
    run = herald.evaluate(message, people(40), at=AT, mode="per_recipient")
    decisions = list(run)
    summary = run.summary()
    assert summary.total == 40 and summary.included == sum(d.included for d in decisions)
    assert sum(summary.channels.values()) == summary.included


def test_the_trace_keeps_every_reachability_reason(herald):
    """Pinned from the engine before the fast path: the drop reasons of a contact channel (email) and of a
    channel with its own reachability (sms), for a malformed handle, a recorded status and no handle."""
    message = herald.load_message(MESSAGE)
    big = Customer("big", {"tier": "gold", "lifetime_value": 2500.0, "timezone": "Asia/Kolkata", "email": "bad@",
                           "phone": "+919812345678", "subscription.sms": "hard_bounced",
                           "last_purchase_date": "2026-05-01", "fraud_score": 0.1})
    marked = Customer("mark", {"tier": "gold", "lifetime_value": 50.0, "email": "a@example.com", "phone": "+1555",
                               "handle_error.phone": "phone '+1555' is not a valid number",
                               "subscription.email": "garbage", "last_purchase_date": "2026-05-01",
                               "fraud_score": 0.1})
    nobody = Customer("none", {"tier": "silver", "last_purchase_date": "2026-05-01", "fraud_score": 0.1})
    drops = {}
    for customer in (big, marked, nobody):
        (d,) = herald.evaluate(message, [customer], at=AT, mode="per_recipient", explain=True)
        assert d.excluded_reason == "no_reachable_channel"
        drops[customer.id] = [(t.detail["channel"], t.detail["why"], t.detail["reason"]) for t in d.trace
                              if t.event == "channel_dropped"]
        assert [(t.step, t.event) for t in d.trace][-2:] == [("channel_priority", "channel_dropped"),
                                                             ("channels", "excluded")]
    assert drops == {
        "big": [("email", "invalid", "email 'bad@' is malformed: name@domain.tld: one @, no spaces, a domain name "
                 "with a dot"),
                ("sms", "hard_bounced", "subscription.sms is recorded as 'hard_bounced'")],
        "mark": [("sms", "invalid", "phone '+1555' is not a valid number"),
                 ("email", "invalid", "subscription.email is 'garbage', not a known status (valid, subscribed, "
                  "unable_to_verify, soft_bounced, hard_bounced, contact_unavailable, unsubscribed, invalid)")],
        "none": [("sms", "contact_unavailable", "no phone"), ("email", "contact_unavailable", "no email")],
    }


def documented_order(reach: ContactReach, customer: Customer) -> Reachability:
    """ContactReach's order spelled with the generic :func:`ordered_reachability` (the form before inlining)."""
    handle = customer.attributes.get(reach.contact)

    def well_formed() -> bool:
        if customer.attributes.get(f"handle_error.{reach.contact}") is not None:
            return False
        return reach.valid is None or bool(reach.valid(str(handle)))

    return ordered_reachability(customer, reach.channel, bool(handle), well_formed)


REACHES = [ContactReach("demo", "handle"), ContactReach("demo", "handle", valid=str.isdigit)]
VALUES = st.one_of(st.none(), st.sampled_from(["", "123", "12a", " ", 0, 7]), st.text(max_size=4))
RECORDED = st.one_of(st.none(), st.sampled_from([*(r.value for r in Reachability), "garbage", "", 3]),
                     st.sampled_from(list(Reachability)), st.lists(st.just("valid"), max_size=1))


@given(handle=VALUES, recorded=RECORDED, marked=st.sampled_from([None, "", "reader says no"]),
       which=st.sampled_from(range(len(REACHES))))
def test_contact_reach_follows_the_documented_order(handle, recorded, marked, which):
    attrs = {"handle": handle, "subscription.demo": recorded, "handle_error.handle": marked}
    customer = Customer("c", {k: v for k, v in attrs.items() if v is not None})
    reach = REACHES[which]
    assert reach.of(customer) is documented_order(reach, customer)


def test_every_contact_channel_answers_through_its_reach(registry):
    """What the channel-priority step calls per candidate equals the channel's ``reachability``."""
    rnd = random.Random(5)
    contact_channels = {n: r.obj for n, r in registry.channels.items() if isinstance(r.obj, ContactReachability)}
    assert {"push", "line", "viber", "wechat", "email"} <= set(contact_channels)
    for name, channel in contact_channels.items():
        answer = ContactReachability.reachability_of(channel)
        contact = channel.reach.contact
        for i in range(200):
            attrs = {contact: rnd.choice([None, "", "U" + "a" * 32, "tok_0000000000001234", "oWx0000000001",
                                          "vb1==", "a b", "u@example.com"]),
                     f"subscription.{name}": rnd.choice(STATUSES)}
            customer = Customer(f"c{i}", {k: v for k, v in attrs.items() if v is not None})
            assert answer(customer, None) is channel.reachability(customer, None)


def test_rulesets_sharing_a_name_and_version_keep_their_own_compiled_function():
    gold = Ruleset("same", "personalization", "first", (Rule("gold", 1, Cmp("customer.tier", "eq", "gold"), {}),), "v1")
    silver = Ruleset("same", "personalization", "first", (Rule("silver", 1, Cmp("customer.tier", "eq", "silver"), {}),),
                     "v1")
    facts = {"customer.tier": "silver"}
    assert CompiledEvaluator().fired(gold, facts) == ()
    assert CompiledEvaluator().fired(silver, facts) == ("silver",)
    assert CompiledEvaluator().bind(silver)(facts) == ("silver",)
    assert CompiledEvaluator().bind(gold)({"customer.tier": "gold"}) == ("gold",)


def test_an_optimizer_is_active_unless_its_active_member_says_no(herald):
    message = herald.load_message(MESSAGE)

    class Plain:
        pass

    class Blocked:
        active = None  # a protocol member set to None does not count (as for a runtime-checkable protocol)

    class Never:
        def active(self, message):
            return False

    assert is_active(Plain(), message) and is_active(Blocked(), message) and not is_active(Never(), message)
