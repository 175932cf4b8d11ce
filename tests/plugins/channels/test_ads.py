"""Ad channels (X-Engage): hashed identifier exports per platform, minimum audience sizes, validation."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from engine import Creative, Customer
from engine.validation import validate_message
from plugins.channels.ads import AdChannel
from tests.plugins.channels.common import codes, context, message


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


ASHA = Customer("c1", {"email": "  Asha.K@Example.COM ", "phone": "+91 98123-45678"})


def test_real_creatives_pass_with_x_engage(registry, catalogue):
    creative = Creative("google", content={"audience_name": "Summer sale 2026", "membership_days": 30})
    msg = message(creative)
    assert codes(validate_message(msg, registry, catalogue)) == {"creatives[0].channel": "strategy"}
    assert validate_message(replace(msg, strategy=("x_engage",)), registry, catalogue) == []


def test_audience_name_required_and_membership_range():
    google = AdChannel("google", {})
    issues = google.validate(Creative("google", content={"membership_days": 999}), message())
    assert codes(issues) == {"audience_name": "required", "membership_days": "range"}
    meta = AdChannel("facebook", {})
    assert codes(meta.validate(Creative("facebook", content={"audience_name": "x", "membership_days": 30}), message())) == {
        "membership_days": "unknown_key"}


def test_emails_are_trimmed_and_lower_cased_before_hashing():
    for name in ("facebook", "instagram", "google", "youtube"):
        assert AdChannel(name, {}).identifiers(ASHA)["email"] == h("asha.k@example.com")


def test_phones_follow_each_platforms_rule():
    # Meta: E.164 digits without '+'; Google Customer Match: E.164 with '+'
    assert AdChannel("facebook", {}).identifiers(ASHA)["phone"] == h("919812345678")
    assert AdChannel("instagram", {}).identifiers(ASHA)["phone"] == h("919812345678")
    assert AdChannel("google", {}).identifiers(ASHA)["phone"] == h("+919812345678")
    assert AdChannel("youtube", {}).identifiers(ASHA)["phone"] == h("+919812345678")
    local = Customer("c2", {"phone": "098123 45678"})
    assert AdChannel("facebook", {}, region="IN").identifiers(local)["phone"] == h("919812345678")


def test_invalid_identifiers_are_not_hashed():
    row = AdChannel("google", {}).identifiers(Customer("c1", {"email": "not-an-email", "phone": "12"}))
    assert row == {"email": None, "phone": None}


def _audience(n: int) -> list[Customer]:
    return [Customer(f"c{i}", {"email": f"user{i}@example.com"}) for i in range(n)]


def test_google_customer_match_needs_a_thousand_members():
    google = AdChannel("google", {})
    small = google.export(_audience(999), message())
    (issue,) = small.issues
    assert not small.ok and issue.code == "audience_too_small" and "999" in issue.message and "1,000" in issue.message
    assert google.export(_audience(1000), message()).ok
    assert AdChannel("facebook", {}).export(_audience(100), message()).ok
    assert not AdChannel("facebook", {"min_audience": 500}).export(_audience(100), message()).ok


def test_export_skips_unreachable_customers_and_duplicates():
    people = [*_audience(3), Customer("dup", {"email": "USER0@example.com "}),
              Customer("opted-out", {"email": "x@example.com", "subscription.google": "unsubscribed"}),
              Customer("none", {"push_token": "abc"}), Customer("bad", {"email": "bad"})]
    export = AdChannel("google", {"min_audience": 1}).export(people, message())
    assert len(export.rows) == 3
    assert export.skipped == {"unsubscribed": 1, "contact_unavailable": 1, "invalid": 1}


def test_meta_export_payload_shape():
    export = AdChannel("facebook", {"min_audience": 1}).export([ASHA, Customer("c2", {"email": "b@example.com"})], message())
    assert export.requests == ({"payload": {"schema": ["EMAIL", "PHONE"], "data": [
        [h("asha.k@example.com"), h("919812345678")], [h("b@example.com"), ""]]}},)


def test_google_export_payload_shape_and_batches():
    export = AdChannel("google", {}).export(_audience(10_001) + [ASHA], message())
    assert [len(r["operations"]) for r in export.requests] == [10_000, 2]
    assert export.requests[1]["operations"][-1] == {"create": {"userIdentifiers": [
        {"hashedEmail": h("asha.k@example.com")}, {"hashedPhoneNumber": h("+919812345678")}]}}


def test_render_gives_the_members_identifiers():
    google = AdChannel("google", {})
    creative = Creative("google", content={"audience_name": "Summer {{ campaign.name }}"})
    assert google.render(creative, context(google, message(creative), ASHA)) == {
        "audience": "Summer Summer 2026",
        "identifiers": {"email": h("asha.k@example.com"), "phone": h("+919812345678")}}
