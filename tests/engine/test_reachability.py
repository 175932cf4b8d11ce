"""engine.reachability: the shared reachability order, per customer and as a polars expression, agreeing
row by row (nulls, empty handles, missing columns, unknown and blocking statuses)."""

from __future__ import annotations

import re

import polars as pl
import pytest

from engine import (
    ContactReach,
    Customer,
    Reachability,
    check_each,
    e164_number,
    fact_column,
    nonempty,
    ordered_reachability,
    ordered_reachability_expr,
)

DIGITS = re.compile(r"\d{4,}")
STATUSES = [None, "garbage", *(r.value for r in Reachability)]
HANDLES = [None, "", "12345", "12a", "  "]


def population() -> list[Customer]:
    """Every handle × every recorded status (absent when None), with an unrelated attribute on some rows."""
    people = []
    for i, (handle, status) in enumerate((h, s) for h in HANDLES for s in STATUSES):
        attrs = {"phone": handle, "subscription.demo": status, "tier": "gold" if i % 2 else None}
        people.append(Customer(f"c{i}", {k: v for k, v in attrs.items() if v is not None}))
    return people


def frame(customers: list[Customer], columns: tuple[str, ...]) -> pl.DataFrame:
    """A fact frame with ``customer.id`` and exactly ``columns`` (``customer.<attribute>``), missing values null."""
    data = {"customer.id": [p.id for p in customers], **{f"customer.{c}": [p.attributes.get(c) for p in customers] for c in columns}}
    return pl.DataFrame(data, schema={k: pl.String for k in data})


def column(expr: pl.Expr, df: pl.DataFrame) -> list[str]:
    return df.lazy().select(expr.alias("s")).collect()["s"].to_list()


REACHES = {
    "no check": ContactReach("demo", "phone"),
    "python check": ContactReach("demo", "phone", valid=DIGITS.fullmatch),
    "both forms": ContactReach("demo", "phone", valid=DIGITS.fullmatch,
                               valid_expr=lambda c: c.str.contains(f"^{DIGITS.pattern}$")),
}


@pytest.mark.parametrize("name", sorted(REACHES))
@pytest.mark.parametrize("columns", [("phone", "subscription.demo", "tier"), ("phone",), ("subscription.demo",), ()])
def test_expr_equals_per_customer_row_by_row(name, columns):
    reach, people = REACHES[name], population()
    # what the frame lacks, the customer lacks too
    seen = [Customer(p.id, {k: v for k, v in p.attributes.items() if k in columns}) for p in people]
    expected = [reach.of(p).value for p in seen]
    assert column(reach.expr(), frame(people, columns)) == expected


def test_the_order():
    reach = REACHES["both forms"]

    def status(**attrs):
        return reach.of(Customer("c1", attrs))

    assert status() is Reachability.CONTACT_UNAVAILABLE
    assert status(phone="", **{"subscription.demo": "subscribed"}) is Reachability.CONTACT_UNAVAILABLE
    assert status(phone="12345") is Reachability.VALID
    # an unknown recorded status (a typo of unsubscribed) is never reachable
    assert status(phone="12345", **{"subscription.demo": "unsubscibed"}) is Reachability.INVALID
    assert status(phone="12345", **{"subscription.demo": "soft_bounced"}) is Reachability.SOFT_BOUNCED
    assert status(phone="12a") is Reachability.INVALID
    assert status(phone="12a", **{"subscription.demo": "subscribed"}) is Reachability.INVALID
    # a blocking record outranks a malformed handle
    assert status(phone="12a", **{"subscription.demo": "unsubscribed"}) is Reachability.UNSUBSCRIBED
    assert status(phone="12a", **{"subscription.demo": "hard_bounced"}) is Reachability.HARD_BOUNCED
    # without a check every handle is well-formed
    assert REACHES["no check"].of(Customer("c1", {"phone": "12a"})) is Reachability.VALID


def test_the_check_is_only_asked_when_the_record_does_not_block():
    calls = []
    reach = ContactReach("demo", "phone", valid=lambda v: calls.append(v) or True)
    reach.of(Customer("c1", {"phone": "1", "subscription.demo": "unsubscribed"}))
    reach.of(Customer("c2", {}))
    assert calls == []
    reach.of(Customer("c3", {"phone": 1234}))  # a non-string handle is checked as a string
    assert calls == ["1234"]


def test_agrees_with_reachability_recorded_without_a_check():
    reach = ContactReach("demo", "phone")
    for p in population():
        assert reach.of(p) is Reachability.recorded(p, "demo", "phone")


def test_fact_column_reads_a_missing_column_as_nulls():
    df = pl.DataFrame({"customer.dnd": [True, None]})
    got = df.select(fact_column("customer.dnd", pl.Boolean).alias("a"), fact_column("customer.nope").alias("b"))
    assert got["a"].to_list() == [True, None]
    assert got["b"].to_list() == [None, None] and got["b"].dtype == pl.String


def test_check_each_is_false_on_nulls_and_empty_strings():
    df = pl.DataFrame({"v": ["12345", "12", "", None]}, schema={"v": pl.String})
    got = df.select(check_each(DIGITS.fullmatch)(pl.col("v")).alias("ok"), nonempty(pl.col("v")).alias("there"))
    assert got["ok"].to_list() == [True, False, False, False]
    assert got["there"].to_list() == [True, True, False, False]


def test_the_order_over_several_handles():
    """A channel matching on e-mail or phone: contact when either is there, valid when either passes."""
    people = [Customer("c1", {"email": "a@b", "phone": "x"}), Customer("c2", {"phone": "12345"}),
              Customer("c3", {"email": "", "phone": "x", "subscription.ads": "unsubscribed"}),
              Customer("c4", {"email": "", "phone": "x"}), Customer("c5", {"subscription.ads": "subscribed"})]

    def one(c: Customer) -> str:
        email, phone = c.attributes.get("email"), c.attributes.get("phone")
        ok = lambda: bool(email and "@" in email) or bool(phone and DIGITS.fullmatch(phone))  # noqa: E731
        return ordered_reachability(c, "ads", bool(email or phone), ok).value

    email, phone = fact_column("customer.email"), fact_column("customer.phone")
    valid = check_each(lambda v: "@" in v)(email) | check_each(DIGITS.fullmatch)(phone)
    expr = ordered_reachability_expr("ads", nonempty(email) | nonempty(phone), valid)
    expected = ["valid", "valid", "unsubscribed", "invalid", "contact_unavailable"]
    assert [one(c) for c in people] == expected
    assert column(expr, frame(people, ("email", "phone", "subscription.ads"))) == expected


def test_e164_number():
    assert e164_number("+44 20 7946 0000") == "+442079460000"  # a landline is still a valid number
    assert e164_number("020 7946 0000", "GB") == "+442079460000"
    assert e164_number("020 7946 0000") is None  # no region to read it with
    assert e164_number("+91123") is None and e164_number("not a number") is None


def test_an_unknown_recorded_status_is_invalid_in_every_form():
    reach = REACHES["both forms"]
    people = [Customer("c1", {"phone": "12345", "subscription.demo": "unsubscibed"}),
              Customer("c2", {"phone": "12345", "subscription.demo": "dnd"})]  # dnd is never a recorded status
    df = frame(people, ("phone", "subscription.demo"))
    assert [reach.of(p) for p in people] == [Reachability.INVALID] * 2
    assert column(reach.expr(), df) == ["invalid"] * 2
    assert column(reach.reachable_expr(), df) == [False, False]
    assert reach.reason(people[0]) == ("subscription.demo is 'unsubscibed', not a known status (valid, subscribed, "
                                       "unable_to_verify, soft_bounced, hard_bounced, contact_unavailable, "
                                       "unsubscribed, invalid)")


def test_a_handle_the_reader_marked_malformed_is_invalid_with_its_reason():
    reach = REACHES["no check"]  # even a channel that takes every handle as well-formed
    marked = Customer("c1", {"phone": "+1555", "handle_error.phone": "phone '+1555' is not a valid number"})
    fine = Customer("c2", {"phone": "+15555550100"})
    blocked = Customer("c3", {"phone": "+1555", "handle_error.phone": "phone '+1555' is not a valid number",
                              "subscription.demo": "unsubscribed"})
    people = [marked, fine, blocked]
    df = frame(people, ("phone", "handle_error.phone", "subscription.demo"))
    assert [reach.of(p) for p in people] == [Reachability.INVALID, Reachability.VALID, Reachability.UNSUBSCRIBED]
    assert column(reach.expr(), df) == ["invalid", "valid", "unsubscribed"]
    assert column(reach.reachable_expr(), df) == [False, True, False]
    assert reach.reason(marked) == "phone '+1555' is not a valid number"
    assert reach.reason(fine) is None
    assert reach.reason(blocked) == "subscription.demo is recorded as 'unsubscribed'"


def test_the_reason_of_a_failed_check_states_the_handle_rule():
    reach = ContactReach("demo", "phone", valid=DIGITS.fullmatch, rule="four or more digits")
    assert reach.reason(Customer("c1", {"phone": "12a"})) == "phone '12a' is malformed: four or more digits"
    assert reach.reason(Customer("c1", {})) == "no phone"
