"""Coupon findings and refusals in full, as the user reads them: every settings issue (path, code, text,
severity), the reasons a recipient gets no code, the series conflict and code-space errors, and the
grants themselves. Written from the mutation run of plugins/incentives/coupon.py (tests/MUTATION.md):
each test pins a text or a value that a surviving mutant could change without any other test noticing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from engine import Campaign, Customer, IncentiveContext, IncentiveSpec, Issue, Message
from engine.stores import InMemoryLedgerStore
from plugins.incentives.coupon import DIGITS, UNAMBIGUOUS, Coupon, CouponExpired, CouponsExhausted
from tests.plugins.incentives.test_coupon import AT, ctx, message, scheduled


def found(spec, msg=None) -> list[Issue]:
    return Coupon().validate(spec, msg or message(**spec))


@pytest.mark.parametrize(("spec", "expected"), [
    ({"source": "printed", "colour": 1, "expiry": {"days": 3}}, [
        Issue("colour", "unknown_key", "unknown coupon setting 'colour'"),
        Issue("source", "invalid", "source is one of generated, list, common, not 'printed'")]),
    ({"length": 3, "expiry": {"days": 3}}, [Issue("length", "invalid", "length is a whole number from 4 to 32")]),
    ({"length": True, "expiry": {"days": 3}}, [Issue("length", "invalid", "length is a whole number from 4 to 32")]),
    ({"alphabet": "emoji", "expiry": {"days": 3}}, [Issue("alphabet", "invalid", "alphabet is alphanumeric or numeric")]),
    ({"cap": 0, "expiry": {"days": 3}}, [Issue("cap", "invalid", "cap is a whole number of codes, at least 1")]),
    ({"cap": True, "expiry": {"days": 3}}, [Issue("cap", "invalid", "cap is a whole number of codes, at least 1")]),
    ({"cap": "5", "source": "list", "codes": ["A"], "expiry": {"days": 3}}, [
        Issue("cap", "invalid", "cap is a whole number of codes, at least 1")]),  # and no cap_above_codes after it
    ({"source": "list", "codes": [], "expiry": {"days": 3}}, [
        Issue("codes", "required", "an uploaded-list series needs a non-empty list of codes")]),
    ({"source": "list", "codes": "A1", "expiry": {"days": 3}}, [
        Issue("codes", "required", "an uploaded-list series needs a non-empty list of codes")]),
    ({"source": "list", "codes": ["A1", "B2", "A1", "", 3, " "], "cap": 3, "expiry": {"days": 3}}, [
        Issue("codes[2]", "duplicate", "code 'A1' repeats codes[0]"),
        Issue("codes[3]", "invalid", "a coupon code is a non-empty string"),
        Issue("codes[4]", "invalid", "a coupon code is a non-empty string"),
        Issue("codes[5]", "invalid", "a coupon code is a non-empty string"),
        Issue("cap", "cap_above_codes", "the cap of 3 exceeds the 2 uploaded codes", "warning")]),
    ({"source": "list", "codes": ["A1", "B2"], "cap": 2, "expiry": {"days": 3}}, []),
    ({"source": "common", "code": " SALE20", "expiry": {"days": 3}}, [
        Issue("code", "required", "a common-code series needs the code, without spaces")]),
    ({"source": "common", "code": "   ", "expiry": {"days": 3}}, [
        Issue("code", "required", "a common-code series needs the code, without spaces")]),
    ({"source": "common", "code": 20, "expiry": {"days": 3}}, [
        Issue("code", "required", "a common-code series needs the code, without spaces")]),
    ({"source": "common", "code": "SALE20"}, [
        Issue("expiry", "no_expiry", "the codes never expire; set a date, days or with_campaign", "warning")]),
    ({"expiry": {"days": 3, "date": "2026-09-01"}}, [
        Issue("expiry", "invalid", "expiry is exactly one of {date}, {days} or {with_campaign: true}")]),
    ({"expiry": {"days": 3, "colour": 1}}, [
        Issue("expiry", "invalid", "expiry is exactly one of {date}, {days} or {with_campaign: true}")]),
    ({"expiry": {"colour": 1}}, [
        Issue("expiry", "invalid", "expiry is exactly one of {date}, {days} or {with_campaign: true}")]),
    ({"expiry": "soon"}, [Issue("expiry", "invalid", "expiry is exactly one of {date}, {days} or {with_campaign: true}")]),
    ({"expiry": {"days": 0}}, [Issue("expiry.days", "invalid", "expiry.days is a whole number of days, at least 1")]),
    ({"expiry": {"days": True}}, [Issue("expiry.days", "invalid", "expiry.days is a whole number of days, at least 1")]),
    ({"expiry": {"days": "3"}}, [Issue("expiry.days", "invalid", "expiry.days is a whole number of days, at least 1")]),
    ({"expiry": {"days": 1}}, []),
    ({"expiry": {"date": "31/08/2026"}}, [
        Issue("expiry.date", "invalid", "expected a date YYYY-MM-DD, got '31/08/2026'")]),
    ({"expiry": {"date": "2026-05-31"}}, [
        Issue("expiry.date", "before_campaign", "codes would expire on 2026-05-31, before the campaign starts on 2026-06-01")]),
    ({"expiry": {"date": "2026-06-01"}}, []),
    ({"expiry": {"with_campaign": "yes"}}, [
        Issue("expiry.with_campaign", "invalid", "with_campaign is true (or use date or days)")]),
    ({"alphabet": "numeric", "length": 4, "cap": 20_000, "expiry": {"days": 7}}, [
        Issue("cap", "code_space_too_small", "numeric codes of length 4 allow only 10000 distinct codes, fewer than "
              "the cap of 20000; use longer codes or the alphanumeric alphabet")]),
    ({"length": 4, "cap": 1_000_000, "expiry": {"days": 7}}, [
        Issue("cap", "code_space_too_small", "alphanumeric codes of length 4 allow only 923521 distinct codes, fewer "
              "than the cap of 1000000; use longer codes or the alphanumeric alphabet")]),
    ({"alphabet": "numeric", "length": 5, "cap": 5_000, "expiry": {"days": 7}}, [
        Issue("cap", "guessable_codes", "the cap of 5000 is more than 1% of the 100000 possible codes: codes become "
              "guessable; use longer codes", "warning")]),
    ({"alphabet": "numeric", "length": 4, "cap": 101, "expiry": {"days": 7}}, [
        Issue("cap", "guessable_codes", "the cap of 101 is more than 1% of the 10000 possible codes: codes become "
              "guessable; use longer codes", "warning")]),
    ({"alphabet": "numeric", "length": 4, "cap": 100, "expiry": {"days": 7}}, []),
    ({"source": "common", "code": "SALE20", "cap": 1, "expiry": {"days": 7}}, []),
    ({"source": "common", "code": "SALE20\n", "expiry": {"days": 7}}, [
        Issue("code", "required", "a common-code series needs the code, without spaces")]),
    ({"expiry": 5}, [Issue("expiry", "invalid", "expiry is exactly one of {date}, {days} or {with_campaign: true}")]),
])
def test_settings_issues_in_full(spec, expected):
    assert found(spec) == expected


def test_a_fixed_expiry_before_the_scheduled_send_in_full():
    msg = scheduled(datetime(2026, 7, 10, 9, 0, tzinfo=UTC), expiry={"date": "2026-07-09"})
    assert found(msg.incentive.settings, msg) == [Issue(
        "expiry.date", "before_send",
        "codes would expire on 2026-07-09, before the scheduled send on 2026-07-10 (schedule.at)")]
    on_the_day = scheduled(datetime(2026, 7, 10, 9, 0, tzinfo=UTC), expiry={"date": "2026-07-10"})
    assert found(on_the_day.incentive.settings, on_the_day) == []


def test_with_campaign_needs_an_end_in_full():
    msg = Message("m", "t", Campaign("open", starts=date(2026, 1, 1)),
                  incentive=IncentiveSpec("coupon", {"expiry": {"with_campaign": True}}))
    assert found({"expiry": {"with_campaign": True}}, msg) == [
        Issue("expiry.with_campaign", "no_campaign_end", "the campaign has no end date to expire with")]


# --- what a recipient gets, and why not ----------------------------------------------------------------

def test_a_preview_code_is_deterministic_and_of_the_series_shape(registry):
    coupon = registry.incentive("coupon")
    for spec, alphabet, length in (({"expiry": {"days": 3}}, UNAMBIGUOUS, 7),
                                   ({"alphabet": "numeric", "length": 40, "expiry": {"days": 3}}, DIGITS, 40)):
        msg = message(**spec)
        grants = [coupon.reserve(spec, Customer(x), ctx(msg, registry, preview=True), AT) for x in ("ana", "ben")]
        again = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=True), AT)
        assert again == grants[0] and grants[0]["code"] != grants[1]["code"]
        assert all(len(g["code"]) == length and set(g["code"]) <= set(alphabet) for g in grants)
        assert grants[0]["preview"] is True and grants[0]["expires_on"] == "2026-07-07"
    common = {"source": "common", "code": "SALE20", "expiry": {"with_campaign": True}}
    assert coupon.reserve(common, Customer("ana"), ctx(message(**common), registry, preview=True), AT) == {
        "code": "SALE20", "expires_on": "2026-08-31", "preview": True}
    listed = {"source": "list", "codes": ["A1", "B2", "C3"]}
    codes = {coupon.reserve(listed, Customer(f"c{i}"), ctx(message(**listed), registry, preview=True), AT)["code"]
             for i in range(30)}
    assert codes == {"A1", "B2", "C3"}


def test_a_real_grant_in_full(registry):
    spec = {"source": "common", "code": "SALE20", "expiry": {"days": 2}}
    msg = message(**spec)
    grant = registry.incentive("coupon").reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)
    assert grant == {"code": "SALE20", "series": "summer-sale", "message": "summer-sale", "customer": "ana",
                     "status": "reserved", "expires_on": "2026-07-06", "preview": False}


def test_the_refusals_in_full(registry):
    coupon = registry.incentive("coupon")
    capped = {"series": "vip", "cap": 1, "expiry": {"days": 3}}
    c = ctx(message(**capped), registry, preview=False)
    coupon.reserve(capped, Customer("ana"), c, AT)
    with pytest.raises(CouponsExhausted, match=r"^coupon series 'vip' reached its cap of 1 codes$"):
        coupon.reserve(capped, Customer("ben"), c, AT)
    with pytest.raises(CouponsExhausted, match=r"^coupon series 'vip' reached its cap of 1 codes$"):
        coupon.reserve(capped, Customer("ben"), ctx(message(**capped), registry, preview=True), AT)
    listed = {"source": "list", "codes": ["A1"], "expiry": {"days": 3}}
    c = ctx(message(**listed), registry, preview=False)
    coupon.reserve(listed, Customer("ana"), c, AT)
    with pytest.raises(CouponsExhausted, match=r"^every uploaded coupon code has been reserved$"):
        coupon.reserve(listed, Customer("ben"), c, AT)
    late = scheduled(datetime(2026, 7, 10, 9, 0, tzinfo=UTC), expiry={"date": "2026-07-09"})
    with pytest.raises(CouponExpired, match=r"^the coupon would expire on 2026-07-09, before the send on 2026-07-10$"):
        coupon.reserve(late.incentive.settings, Customer("ana"), ctx(late, registry, preview=True),
                       datetime(2026, 7, 10, 9, 0, tzinfo=UTC))


def test_issue_and_release_refuse_what_they_cannot_do(registry):
    spec = {"expiry": {"days": 3}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    at = IncentiveContext(msg, registry.ledger, AT)
    preview = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=True), AT)
    with pytest.raises(KeyError, match="a preview grant cannot be issued"):
        asyncio.run(coupon.issue(spec, preview, at))
    stranger = {"series": "summer-sale", "message": "summer-sale", "customer": "zed", "code": "X", "preview": False}
    with pytest.raises(KeyError, match="no coupon reserved for customer 'zed' in series 'summer-sale'"):
        asyncio.run(coupon.issue(spec, stranger, at))
    grant = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)
    coupon.release(spec, {k: v for k, v in grant.items() if k != "series"}, at)  # not a real grant: ignored
    assert coupon.reservations(spec, msg, registry.ledger) == 1
    coupon.release(spec, grant, at)
    assert coupon.reservations(spec, msg, registry.ledger) == 0


def test_releasing_a_common_code_frees_a_place_under_the_cap(registry):
    spec = {"source": "common", "code": "SALE20", "cap": 1, "expiry": {"days": 3}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    grant = coupon.reserve(spec, Customer("ana"), c, AT)
    coupon.release(spec, grant, IncentiveContext(msg, registry.ledger, AT))
    assert coupon.reserve(spec, Customer("ben"), c, AT)["code"] == "SALE20"


# --- series shared between messages, and code space against the audience ------------------------------

def test_the_series_a_message_draws_from_and_what_sharing_messages_must_agree_on():
    coupon = Coupon()
    assert coupon.shared({"expiry": {"days": 3}}, message()) == (
        "series 'summer-sale'", {"source": "generated", "cap": None, "alphabet": "alphanumeric", "length": 7})
    assert coupon.shared({"series": "vip", "source": "list", "codes": ["A"], "cap": 1}, message()) == (
        "series 'vip'", {"source": "list", "cap": 1, "codes": ["A"]})
    assert coupon.shared({"alphabet": "numeric", "length": 9}, message())[1] == {
        "source": "generated", "cap": None, "alphabet": "numeric", "length": 9}
    assert coupon.shared({"source": "common", "code": "S"}, message()) == (
        "series 'summer-sale'", {"source": "common", "cap": None, "code": "S"})


def test_a_series_conflict_names_both_messages_and_every_difference(registry):
    store = InMemoryLedgerStore()
    first = {"series": "vip", "cap": 5, "length": 8, "expiry": {"days": 3}}
    one = replace(message(**first), id="m1")
    registry.incentive("coupon").reserve(first, Customer("ana"), replace(ctx(one, registry, preview=False),
                                                                         ledger=store), AT)
    other = {"series": "vip", "cap": 6, "length": 9, "expiry": {"days": 3}}
    two = replace(message(**other), id="m2")
    issues = Coupon().prepare(other, replace(ctx(two, registry, preview=False), ledger=store), None)
    assert issues == [Issue("cap", "series_conflict", "messages 'm1' and 'm2' share coupon series 'vip' with different "
                            "settings (cap: 5 in 'm1', 6 in 'm2'; length: 8 in 'm1', 9 in 'm2')")]
    again = Coupon().prepare({**other, "cap": 5, "length": 8}, replace(ctx(two, registry, preview=False), ledger=store),
                             None)
    assert again == []
    changed = Coupon().prepare(other, replace(ctx(one, registry, preview=False), ledger=store), None)
    assert changed == [Issue("cap", "series_conflict", "message 'm1' created coupon series 'vip' with other settings "
                             "than it has now (cap: 5 in 'm1', 6 in 'm1'; length: 8 in 'm1', 9 in 'm1')")]


@pytest.mark.parametrize(("spec", "audience", "expected"), [
    ({"alphabet": "numeric", "length": 4}, 10_000, None),
    ({"alphabet": "numeric", "length": 4}, 10_001, "numeric codes of length 4 allow only 10000 distinct codes: too few "
                                                   "for 10001 recipients; use longer codes, the alphanumeric alphabet or a cap"),
    ({"alphabet": "numeric", "length": 4, "cap": 100}, 1_000_000, None),
    ({"source": "list", "codes": ["A"]}, 5, None),  # a list series is refused one by one, not up front
    ({"length": 4}, 923_522, "alphanumeric codes of length 4 allow only 923521 distinct codes: too few for 923522 "
                             "recipients; use longer codes, the alphanumeric alphabet or a cap"),
    ({"alphabet": "numeric"}, 10**7 + 1, "numeric codes of length 7 allow only 10000000 distinct codes: too few for "
                                         "10000001 recipients; use longer codes, the alphanumeric alphabet or a cap"),
])
def test_the_code_space_against_the_audience(registry, spec, audience, expected):
    spec = {**spec, "expiry": {"days": 3}}
    got = Coupon().prepare(spec, ctx(message(**spec), registry, preview=False), audience)
    assert got == ([] if expected is None else [Issue("length", "code_space_too_small", expected)])
    assert Coupon().prepare(spec, ctx(message(**spec), registry, preview=False), None) == []


def test_codes_already_held_count_against_the_space_left_and_under_a_cap(registry):
    coupon = registry.incentive("coupon")
    for spec, fits, refused in (({"series": "s", "alphabet": "numeric", "length": 4, "expiry": {"days": 3}},
                                 9_997, 9_998),
                                ({"series": "t", "alphabet": "numeric", "length": 4, "cap": 10_000,
                                  "expiry": {"days": 3}}, 10**9, None)):
        c = ctx(message(**spec), registry, preview=False)
        for i in range(3):
            coupon.reserve(spec, Customer(f"c{i}"), c, AT)
        assert coupon.prepare(spec, c, fits) == []
        if refused is not None:
            assert coupon.prepare(spec, c, refused) == [Issue(
                "length", "code_space_too_small", "numeric codes of length 4 allow only 10000 distinct codes, 3 already "
                "taken: too few for 9998 recipients; use longer codes, the alphanumeric alphabet or a cap")]


def test_the_sample_settings_are_valid_and_the_invalid_samples_fail_where_they_say():
    coupon = Coupon()
    for spec in coupon.sample_specs():
        assert found(spec) == [], spec
    assert [s["source"] for s in coupon.sample_specs()] == ["generated", "list", "common"]
    for spec, path in coupon.sample_invalid_specs():
        assert [i.path for i in found(spec) if i.is_error] == [path], spec


def test_a_preview_gives_a_common_code_to_everyone_without_a_cap(registry):
    spec = {"source": "common", "code": "SALE20", "expiry": {"days": 3}}
    c = ctx(message(**spec), registry, preview=True)
    assert [registry.incentive("coupon").reserve(spec, Customer(x), c, AT)["code"] for x in ("ana", "ben", "cai")] == [
        "SALE20"] * 3


def test_only_a_real_grant_is_issued_or_released(registry):
    spec = {"expiry": {"with_campaign": True}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    at = IncentiveContext(msg, registry.ledger, AT)
    grant = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)
    for fake in ({k: v for k, v in grant.items() if k != "preview"}, {**grant, "preview": True}):
        with pytest.raises(KeyError, match=r"^'a preview grant cannot be issued'$"):
            asyncio.run(coupon.issue(spec, fake, at))
        coupon.release(spec, fake, at)
        assert coupon.reservations(spec, msg, registry.ledger) == 1
    issued = asyncio.run(coupon.issue(spec, grant, at))
    assert issued == {"code": grant["code"], "series": "summer-sale", "message": "summer-sale", "customer": "ana",
                      "status": "issued", "issued_on": "2026-07-04", "expires_on": "2026-08-31"}


def test_releasing_a_generated_code_frees_the_code(registry):
    spec = {"expiry": {"days": 3}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    grant = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)
    assert registry.ledger.info(("coupon", "summer-sale")).items == 1
    coupon.release(spec, grant, IncentiveContext(msg, registry.ledger, AT))
    assert registry.ledger.info(("coupon", "summer-sale")).items == 0
