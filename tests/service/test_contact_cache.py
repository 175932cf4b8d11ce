"""The contact checks ``POST /evaluate`` remembers (phone numbers, e-mail addresses): the same answers as the
catalogue's own checks, refusals and their reasons included, and never more than the bound."""

from __future__ import annotations

import pytest

from engine.audience import check_handle
from service.http.adhoc import inline_customers, remembered_contacts

PHONES = ["+919812345678", "+91 98123 45678", "0812345678", "+1", "+44 20 7946 0958", "+919812345678"]
EMAILS = ["Ana@Example.COM", "ana@example.com", "no-at-sign", "two@@example.com", "ben@example.org"]


def test_remembered_checks_answer_as_the_catalogues_own(herald):
    own = herald.catalogue.contacts
    remembered = remembered_contacts(own, size=1_000)
    assert set(remembered) == set(own) and {"phone", "email"} <= set(own)
    for _ in range(2):  # the second round is answered from memory
        for name, values in (("phone", PHONES), ("email", EMAILS)):
            for value in values:
                assert check_handle(remembered[name], value) == check_handle(own[name], value), value


def test_remembered_checks_are_bounded(herald):
    remembered = remembered_contacts(herald.catalogue.contacts, size=2)
    for i in range(5):
        check_handle(remembered["phone"], f"+9198123456{i:02d}")
    assert remembered["phone"].normalise.cache_info().currsize == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("customer", [
    {"id": "c1", "phone": "+91 98123 45678", "email": "Ana@Example.COM", "tier": "gold"},
    {"id": "c2", "phone": "0812345678", "email": "no-at-sign"},  # malformed handles are kept with their reason
])
def test_inline_customers_are_the_same_as_without_memory(herald, customer):
    from engine.audience import flatten, make_customer

    expected = make_customer(flatten(customer), herald.catalogue.customer_types(), "customers", 0,
                             herald.catalogue.contacts)
    assert inline_customers(herald, [customer]) == [expected]
    assert inline_customers(herald, [customer]) == [expected]
