"""Coupon series at their edges: a cap exactly the audience, code lengths 4 and 32, the code space used to
the last code, expiry on the send day, and the defaults (length 7, alphanumeric, generated)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from engine import Customer, EvaluationContext, Schedule
from engine.finish import INCENTIVE_UNAVAILABLE
from engine.run import evaluate
from engine.runtime import Herald
from plugins.incentives.coupon import (
    DEFAULT_LENGTH,
    UNAMBIGUOUS,
    Coupon,
    CouponExpired,
    CouponsExhausted,
    code_space,
    shared_settings,
)
from tests.plugins.incentives.test_coupon import AT, CAMPAIGN, customers, issues, message


def ctx(msg, registry, *, preview):
    return EvaluationContext(msg, registry, AT, lambda kind, draft: (), preview)


# --- defaults -------------------------------------------------------------------------------------------

def test_generated_codes_default_to_7_unambiguous_characters(registry):
    assert DEFAULT_LENGTH == 7
    spec = {"expiry": {"days": 14}}
    msg = message(**spec)
    real = Coupon().reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)["code"]
    sample = Coupon().reserve(spec, Customer("ben"), ctx(msg, registry, preview=True), AT)["code"]
    for code in (real, sample):
        assert len(code) == 7 and set(code) <= set(UNAMBIGUOUS)
    assert code_space(spec) == 31 ** 7
    assert shared_settings(spec) == {"source": "generated", "cap": None, "alphabet": "alphanumeric", "length": 7}


def test_the_default_length_is_within_the_recommended_5_to_7_and_valid():
    assert 5 <= DEFAULT_LENGTH <= 7
    assert issues({"expiry": {"days": 1}}) == set()


# --- lengths --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [4, 5, 7, 32])
def test_lengths_from_4_to_32_are_accepted(registry, length):
    spec = {"length": length, "alphabet": "numeric" if length == 32 else "alphanumeric", "expiry": {"days": 1}}
    assert issues(spec) == set()
    msg = message(**spec)
    code = Coupon().reserve(spec, Customer("ana"), ctx(msg, registry, preview=False), AT)["code"]
    assert len(code) == length
    assert len(Coupon().reserve(spec, Customer("ben"), ctx(msg, registry, preview=True), AT)["code"]) == length


@pytest.mark.parametrize("length", [3, 33, 0, -1, True, 7.0, "7", None])
def test_lengths_outside_4_to_32_or_not_whole_numbers_are_refused(length):
    assert issues({"length": length, "expiry": {"days": 1}}) == {("length", "invalid", "error")}


# --- caps -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preview", [True, False])
def test_a_cap_exactly_the_audience_serves_everyone(registry, preview):
    msg = message(cap=5, expiry={"days": 14})
    decisions = evaluate(msg, customers(5), at=AT, registry=registry, preview=preview)
    assert [d.included for d in decisions] == [True] * 5
    assert all(d.incentive["code"] for d in decisions)
    if not preview:
        assert len({d.incentive["code"] for d in decisions}) == 5


@pytest.mark.parametrize("preview", [True, False])
def test_one_recipient_beyond_the_cap_is_refused_in_audience_order(registry, catalogue, preview):
    msg = message(cap=5, expiry={"days": 14})
    run = Herald(registry, catalogue).evaluate(msg, customers(6), at=AT, preview=preview)
    decisions = list(run)
    assert [d.included for d in decisions] == [True] * 5 + [False]
    assert decisions[5].excluded_reason == INCENTIVE_UNAVAILABLE
    assert run.summary().as_dict()["exclusion_reasons"] == {INCENTIVE_UNAVAILABLE: 1}


def test_a_cap_equal_to_the_code_space_is_allowed_one_more_is_not():
    space = {"alphabet": "numeric", "length": 4, "expiry": {"days": 1}}  # 10,000 codes
    assert ("cap", "code_space_too_small", "error") not in issues({**space, "cap": 10_000})
    assert issues({**space, "cap": 10_001}) == {("cap", "code_space_too_small", "error")}


def test_a_cap_of_exactly_1_percent_of_the_code_space_is_not_guessable_one_more_is():
    space = {"alphabet": "numeric", "length": 4, "expiry": {"days": 1}}
    assert issues({**space, "cap": 100}) == set()
    assert issues({**space, "cap": 101}) == {("cap", "guessable_codes", "warning")}


@pytest.mark.parametrize("cap", [0, -1, True, 2.5, "5"])
def test_a_cap_is_a_whole_number_of_at_least_1(cap):
    assert ("cap", "invalid", "error") in issues({"cap": cap, "expiry": {"days": 1}})


def test_cap_1_serves_exactly_one(registry):
    msg = message(cap=1, expiry={"days": 14})
    assert [d.included for d in evaluate(msg, customers(2), at=AT, registry=registry, preview=False)] == [True, False]


def test_an_uploaded_list_with_a_cap_equal_to_its_codes_is_fine_one_more_is_a_warning():
    codes = ["A1", "B2", "C3"]
    assert issues({"source": "list", "codes": codes, "cap": 3, "expiry": {"days": 1}}) == set()
    assert issues({"source": "list", "codes": codes, "cap": 4, "expiry": {"days": 1}}) == {
        ("cap", "cap_above_codes", "warning")}


def test_an_audience_exactly_the_code_space_fits_one_more_does_not(registry):
    spec = {"alphabet": "numeric", "length": 4, "expiry": {"days": 1}}
    msg = message(**spec)
    c = ctx(msg, registry, preview=True)
    assert Coupon().prepare(spec, c, 10_000) == []
    (problem,) = Coupon().prepare(spec, c, 10_001)
    assert (problem.path, problem.code) == ("length", "code_space_too_small")
    assert "10000 distinct codes" in problem.message and "10001 recipients" in problem.message
    assert Coupon().prepare({**spec, "cap": 10_000}, c, 10_001) == []  # the cap stops at the space


# --- expiry ---------------------------------------------------------------------------------------------

def test_a_fixed_expiry_on_the_send_day_is_valid_the_day_before_is_not(registry):
    send = datetime(2026, 7, 10, 9, 0, tzinfo=UTC)
    at_send = replace(message(expiry={"date": "2026-07-10"}), schedule=Schedule("at", send))
    assert [i for i in Coupon().validate(at_send.incentive.settings, at_send) if i.is_error] == []
    spec = {"expiry": {"date": "2026-07-09"}}
    (problem,) = [i for i in Coupon().validate(spec, at_send) if i.is_error]
    assert (problem.path, problem.code) == ("expiry.date", "before_send")
    grant = Coupon().reserve({"expiry": {"date": "2026-07-10"}}, Customer("ana"), ctx(at_send, registry, preview=True), send)
    assert grant["expires_on"] == "2026-07-10"
    with pytest.raises(CouponExpired, match="2026-07-09, before the send on 2026-07-10"):
        Coupon().reserve(spec, Customer("ana"), ctx(at_send, registry, preview=True), send)


def test_an_expiry_on_the_campaign_start_is_valid_the_day_before_is_not():
    assert CAMPAIGN.starts == date(2026, 6, 1)
    assert issues({"expiry": {"date": "2026-06-01"}}) == set()
    assert issues({"expiry": {"date": "2026-05-31"}}) == {("expiry.date", "before_campaign", "error")}


@pytest.mark.parametrize(("days", "expires"), [(1, "2026-07-05"), (30, "2026-08-03")])
def test_days_count_from_each_recipients_send_day(registry, days, expires):
    spec = {"expiry": {"days": days}}
    grant = Coupon().reserve(spec, Customer("ana"), ctx(message(**spec), registry, preview=True), AT)
    assert grant["expires_on"] == expires


@pytest.mark.parametrize("days", [0, -1, True, 1.5, "3"])
def test_days_is_a_whole_number_of_at_least_1(days):
    assert issues({"expiry": {"days": days}}) == {("expiry.days", "invalid", "error")}


def test_with_campaign_expires_on_the_campaigns_last_day(registry):
    spec = {"expiry": {"with_campaign": True}}
    grant = Coupon().reserve(spec, Customer("ana"), ctx(message(**spec), registry, preview=True), AT)
    assert grant["expires_on"] == "2026-08-31"


def test_no_expiry_is_a_warning_and_codes_carry_none(registry):
    assert issues({}) == {("expiry", "no_expiry", "warning")}
    grant = Coupon().reserve({}, Customer("ana"), ctx(message(), registry, preview=True), AT)
    assert grant["expires_on"] is None


@pytest.mark.parametrize("expiry", [{"days": 1, "date": "2026-09-01"}, {}, {"weeks": 2}, "2026-09-01",
                                    {"with_campaign": False}, {"date": "next friday"}])
def test_expiry_is_exactly_one_well_formed_choice(expiry):
    found = issues({"expiry": expiry})
    assert len(found) == 1 and next(iter(found))[1] == "invalid"


def test_exhausted_series_say_why(registry):
    spec = {"alphabet": "numeric", "length": 4, "cap": 2, "expiry": {"days": 1}}
    msg = message(**spec)
    c = ctx(msg, registry, preview=False)
    for who in ("a", "b"):
        Coupon().reserve(spec, Customer(who), c, AT)
    with pytest.raises(CouponsExhausted, match="coupon series 'summer-sale' reached its cap of 2 codes"):
        Coupon().reserve(spec, Customer("c"), c, AT)
