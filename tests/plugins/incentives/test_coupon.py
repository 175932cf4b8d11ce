"""The coupon series: settings validation, previews, the ledger (uniqueness, cap, one per customer), release."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, date, datetime

import pytest

from engine import Campaign, Creative, Customer, EvaluationContext, IncentiveSpec, Message
from engine.pipeline import evaluate
from plugins.incentives.coupon import UNAMBIGUOUS, Coupon, CouponsExhausted

AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
CAMPAIGN = Campaign("summer-2026", "Summer 2026", date(2026, 6, 1), date(2026, 8, 31))
SMS = Creative("sms", content={"body": "Your code {{ coupon.code }}, valid until {{ coupon.expires_on }}. {{ optout }}"})


def message(**settings) -> Message:
    return Message("summer-sale", "Summer sale", CAMPAIGN, creatives=(SMS,),
                   incentive=IncentiveSpec("coupon", settings))


def ctx(msg: Message, registry, *, preview: bool) -> EvaluationContext:
    return EvaluationContext(msg, registry, AT, lambda kind, draft: (), preview)


def customers(n: int) -> list[Customer]:
    return [Customer(f"c{i:05d}", {"phone": "+919818427393"}) for i in range(n)]


def issues(spec, msg=None):
    return {(i.path, i.code, i.severity) for i in Coupon().validate(spec, msg or message(**spec))}


# --- settings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    {"source": "generated", "alphabet": "alphanumeric", "length": 8, "cap": 50_000, "expiry": {"days": 14}},
    {"source": "generated", "alphabet": "numeric", "length": 10, "cap": 1000, "expiry": {"with_campaign": True}},
    {"source": "list", "codes": ["SUMMER-A1", "SUMMER-B2", "SUMMER-C3"], "expiry": {"date": "2026-09-30"}},
    {"source": "common", "code": "SALE20", "cap": 10_000, "expiry": {"date": "2026-08-31"}},
])
def test_valid_series_have_no_issues(spec):
    assert issues(spec) == set()


@pytest.mark.parametrize(("spec", "expected"), [
    ({"source": "printed", "expiry": {"days": 3}}, ("source", "invalid", "error")),
    ({"length": 3, "expiry": {"days": 3}}, ("length", "invalid", "error")),
    ({"length": "8", "expiry": {"days": 3}}, ("length", "invalid", "error")),
    ({"alphabet": "emoji", "expiry": {"days": 3}}, ("alphabet", "invalid", "error")),
    ({"cap": 0, "expiry": {"days": 3}}, ("cap", "invalid", "error")),
    ({"source": "list", "codes": [], "expiry": {"days": 3}}, ("codes", "required", "error")),
    ({"source": "list", "codes": ["A1", "B2", "A1"], "expiry": {"days": 3}}, ("codes[2]", "duplicate", "error")),
    ({"source": "list", "codes": ["A1", ""], "expiry": {"days": 3}}, ("codes[1]", "invalid", "error")),
    ({"source": "list", "codes": ["A1", "B2"], "cap": 5, "expiry": {"days": 3}}, ("cap", "cap_above_codes", "warning")),
    ({"source": "common", "expiry": {"days": 3}}, ("code", "required", "error")),
    ({"source": "common", "code": "SALE 20", "expiry": {"days": 3}}, ("code", "required", "error")),
    ({"source": "common", "code": "SALE20"}, ("expiry", "no_expiry", "warning")),
    ({"expiry": {"days": 3, "date": "2026-09-01"}}, ("expiry", "invalid", "error")),
    ({"expiry": {"days": 0}}, ("expiry.days", "invalid", "error")),
    ({"expiry": {"date": "31/08/2026"}}, ("expiry.date", "invalid", "error")),
    ({"expiry": {"date": "2026-05-01"}}, ("expiry.date", "before_campaign", "error")),
    ({"expiry": {"with_campaign": "yes"}}, ("expiry.with_campaign", "invalid", "error")),
    ({"colour": "red", "expiry": {"days": 3}}, ("colour", "unknown_key", "error")),
])
def test_each_settings_rule_names_its_field(spec, expected):
    assert expected in issues(spec)


def test_with_campaign_expiry_needs_a_campaign_end():
    msg = Message("m", "t", Campaign("open-ended", starts=date(2026, 1, 1)),
                  incentive=IncentiveSpec("coupon", {"expiry": {"with_campaign": True}}))
    found = Coupon().validate({"expiry": {"with_campaign": True}}, msg)
    assert [(i.path, i.code) for i in found] == [("expiry.with_campaign", "no_campaign_end")]


def test_code_space_too_small_for_the_cap_is_a_clear_error():
    found = Coupon().validate({"alphabet": "numeric", "length": 4, "cap": 20_000, "expiry": {"days": 7}}, message())
    (problem,) = found
    assert (problem.path, problem.code, problem.is_error) == ("cap", "code_space_too_small", True)
    assert "10000 distinct codes" in problem.message and "20000" in problem.message


def test_a_cap_near_the_code_space_warns_that_codes_become_guessable():
    found = Coupon().validate({"alphabet": "numeric", "length": 5, "cap": 5_000, "expiry": {"days": 7}}, message())
    assert [(i.path, i.code, i.severity) for i in found] == [("cap", "guessable_codes", "warning")]


# --- previews and reservations ------------------------------------------------------------------------

def test_a_preview_evaluation_reserves_nothing(registry):
    msg = message(length=8, cap=5, expiry={"days": 14})
    coupon = registry.incentive("coupon")
    decisions = evaluate(msg, customers(20), at=AT, registry=registry, preview=True)
    assert all(d.incentive["preview"] for d in decisions)
    assert coupon.reservations(msg.incentive.settings, msg) == 0  # 20 previews despite a cap of 5
    again = evaluate(msg, customers(20), at=AT, registry=registry, preview=True)
    assert [d.incentive["code"] for d in again] == [d.incentive["code"] for d in decisions]  # deterministic


def test_a_real_evaluation_reserves_one_unique_code_per_customer(registry):
    msg = message(length=6, expiry={"days": 14})
    first = evaluate(msg, customers(300), at=AT, registry=registry, preview=False)
    codes = [d.incentive["code"] for d in first]
    assert len(set(codes)) == 300
    assert all(len(c) == 6 and set(c) <= set(UNAMBIGUOUS) for c in codes)
    assert not set("0O1IL") & set("".join(codes))
    assert first[0].incentive["expires_on"] == "2026-07-18"
    # at most one code per customer per message: evaluating again hands back the same codes
    second = evaluate(msg, customers(300), at=AT, registry=registry, preview=False)
    assert [d.incentive["code"] for d in second] == codes
    assert registry.incentive("coupon").reservations(msg.incentive.settings, msg) == 300


def test_numeric_codes_are_digits_of_the_set_length(registry):
    msg = message(alphabet="numeric", length=7, expiry={"days": 1})
    codes = {d.incentive["code"] for d in evaluate(msg, customers(50), at=AT, registry=registry, preview=False)}
    assert len(codes) == 50 and all(c.isdigit() and len(c) == 7 for c in codes)


def test_the_issue_cap_stops_further_reservations(registry):
    msg = message(length=8, cap=3, expiry={"days": 14})
    coupon, c = registry.incentive("coupon"), ctx(msg, registry, preview=False)
    for customer in customers(3):
        coupon.reserve(msg.incentive.settings, customer, c)
    with pytest.raises(CouponsExhausted, match="reached its cap of 3"):
        coupon.reserve(msg.incentive.settings, Customer("late"), c)
    # the three holders still get their codes back
    assert coupon.reserve(msg.incentive.settings, customers(1)[0], c)["code"]


def test_a_small_code_space_is_used_up_completely_without_duplicates(registry):
    spec = {"alphabet": "numeric", "length": 4, "expiry": {"days": 1}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    codes = {coupon.reserve(spec, Customer(f"c{i}"), c)["code"] for i in range(10_000)}
    assert len(codes) == 10_000
    with pytest.raises(CouponsExhausted, match="all 10000 codes of length 4 are taken"):
        coupon.reserve(spec, Customer("one-too-many"), c)


def test_uploaded_codes_are_handed_out_once_and_released_codes_return(registry):
    spec = {"source": "list", "codes": ["SUMMER-A1", "SUMMER-B2"], "expiry": {"date": "2026-09-30"}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    a = coupon.reserve(spec, Customer("ana"), c)
    b = coupon.reserve(spec, Customer("ben"), c)
    assert {a["code"], b["code"]} == {"SUMMER-A1", "SUMMER-B2"}
    assert a["expires_on"] == "2026-09-30"
    with pytest.raises(CouponsExhausted, match="every uploaded coupon code"):
        coupon.reserve(spec, Customer("cai"), c)
    coupon.release(spec, a)  # ana's send failed
    assert coupon.reserve(spec, Customer("cai"), c)["code"] == a["code"]


def test_a_common_code_is_shared_and_counts_against_the_cap(registry):
    spec = {"source": "common", "code": "SALE20", "cap": 2, "expiry": {"with_campaign": True}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    grants = [coupon.reserve(spec, Customer(x), c) for x in ("ana", "ben")]
    assert [g["code"] for g in grants] == ["SALE20", "SALE20"]
    assert grants[0]["expires_on"] == "2026-08-31"  # the campaign's end
    with pytest.raises(CouponsExhausted):
        coupon.reserve(spec, Customer("cai"), c)


def test_issue_marks_the_code_sent_and_release_then_keeps_it(registry):
    spec = {"length": 8, "expiry": {"days": 10}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    grant = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False))
    issued = asyncio.run(coupon.issue(spec, grant, msg, datetime(2026, 7, 6, 9, 0, tzinfo=UTC)))
    assert issued["status"] == "issued" and issued["code"] == grant["code"]
    assert (issued["issued_on"], issued["expires_on"]) == ("2026-07-06", "2026-07-16")  # N days after issue
    coupon.release(spec, grant)
    assert coupon.reservations(spec, msg) == 1


def test_releasing_a_preview_grant_changes_nothing(registry):
    spec = {"length": 8, "expiry": {"days": 10}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=False))
    preview = coupon.reserve(spec, Customer("ana"), ctx(msg, registry, preview=True))
    coupon.release(spec, preview)
    assert coupon.reservations(spec, msg) == 1


def test_concurrent_reservations_never_share_a_code(registry):
    spec = {"length": 5, "expiry": {"days": 10}}
    msg, coupon = message(**spec), registry.incentive("coupon")
    c = ctx(msg, registry, preview=False)
    got: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = [coupon.reserve(spec, Customer(f"t{k}-{i}"), c)["code"] for i in range(400)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 3200
    assert coupon.reservations(spec, msg) == 3200


def test_messages_sharing_a_series_share_its_cap(registry):
    spec = {"series": "summer-vip", "cap": 1, "expiry": {"days": 10}}
    coupon = registry.incentive("coupon")
    one = Message("m1", "t", CAMPAIGN, incentive=IncentiveSpec("coupon", spec))
    two = Message("m2", "t", CAMPAIGN, incentive=IncentiveSpec("coupon", spec))
    coupon.reserve(spec, Customer("ana"), ctx(one, registry, preview=False))
    with pytest.raises(CouponsExhausted, match="summer-vip"):
        coupon.reserve(spec, Customer("ben"), ctx(two, registry, preview=False))
