"""``engine.explain.explain`` reads the incentive's reservations from the ledger it is given, as
``Herald.evaluate`` does, rather than from the registry's own."""

from __future__ import annotations

from dataclasses import replace

from engine import IncentiveSpec
from engine.explain import explain
from engine.model import Customer
from engine.stores import InMemoryLedgerStore

from ..conftest import AT
from .test_run import BUYER, LISTED, MESSAGE


def buyer(n: int) -> Customer:
    """A customer the sample message sends an SMS to."""
    return Customer(f"p{n}", {**BUYER, "phone": f"+91981842730{n}"})


def test_explain_with_a_full_ledger_reports_what_evaluate_with_that_ledger_reports(herald):
    listed = replace(herald.load_message(MESSAGE), incentive=IncentiveSpec("coupon", LISTED))
    full = InMemoryLedgerStore()
    taken = list(herald.evaluate(listed, [buyer(0), buyer(1)], at=AT, preview=False, ledger=full))
    assert [d.incentive["code"] for d in taken if d.incentive] == ["LIST-A1", "LIST-B2"]

    late = buyer(2)
    want = next(iter(herald.evaluate(listed, [late], at=AT, mode="per_recipient", ledger=full)))
    assert want.excluded_reason == "incentive_unavailable"
    got = explain(listed, herald.registry, late, at=AT, ledger=full)
    assert (got.decision.included, got.decision.excluded_reason) == (False, "incentive_unavailable")
    assert got.decision.incentive == want.incentive

    # a holder of a code is shown the code it holds in that ledger
    holder = explain(listed, herald.registry, buyer(1), at=AT, ledger=full)
    assert holder.decision.included and holder.decision.incentive["code"] == "LIST-B2"

    # the registry's own ledger is untouched: without a ledger the same customer gets a code
    fresh = explain(listed, herald.registry, late, at=AT)
    assert fresh.decision.included and fresh.decision.incentive is not None
