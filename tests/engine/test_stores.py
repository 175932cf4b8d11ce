"""The in-memory ledger store: the atomic operations a database implementation must match (one entry per
holder, an item never held twice, caps, idempotent marks, releases that free items), also under threads."""

from __future__ import annotations

import itertools
import threading

import pytest

from engine import InMemoryLedgerStore, LedgerFull, LedgerStore

SERIES = ("coupon", "summer")


def test_it_meets_the_protocol():
    assert isinstance(InMemoryLedgerStore(), LedgerStore)


def test_a_holder_gets_one_entry_and_reserving_again_returns_it():
    store = InMemoryLedgerStore()
    first = store.reserve(SERIES, ("m1", "ana"), {"n": 1}, candidates=iter(["A", "B"]))
    again = store.reserve(SERIES, ("m1", "ana"), {"n": 2}, candidates=iter(["B"]))
    assert again == first and (first.item, first.status, dict(first.data)) == ("A", "reserved", {"n": 1})
    assert store.entry(SERIES, ("m1", "ana")) == first
    assert store.entry(SERIES, ("m2", "ana")) is None  # the holder is (message, customer)


def test_an_item_is_never_held_by_two_holders_and_a_release_frees_it():
    store = InMemoryLedgerStore()
    a = store.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1", "B2"])
    b = store.reserve(SERIES, ("m1", "ben"), {}, candidates=["A1", "B2"])
    assert (a.item, b.item) == ("A1", "B2")
    with pytest.raises(LedgerFull) as full:
        store.reserve(SERIES, ("m1", "cai"), {}, candidates=["A1", "B2"])
    assert full.value.limit == "items"
    assert store.release(SERIES, ("m1", "ana"), "A1")
    assert store.reserve(SERIES, ("m1", "cai"), {}, candidates=["A1", "B2"]).item == "A1"


def test_cap_and_space_are_checked_with_the_insert():
    store = InMemoryLedgerStore()
    store.reserve(SERIES, ("m1", "ana"), {}, cap=2)
    store.reserve(SERIES, ("m1", "ben"), {}, cap=2)
    with pytest.raises(LedgerFull) as capped:
        store.reserve(SERIES, ("m1", "cai"), {}, cap=2)
    assert capped.value.limit == "cap"
    assert store.reserve(SERIES, ("m1", "ana"), {}, cap=2).holder == ("m1", "ana")  # holders keep theirs
    digits = ("coupon", "digits")
    store.reserve(digits, ("m1", "ana"), {}, candidates=itertools.cycle("0"), space=1)
    with pytest.raises(LedgerFull, match="digits is full"):  # never spins on an endless candidate stream
        store.reserve(digits, ("m1", "ben"), {}, candidates=itertools.cycle("0"), space=1)


def test_mark_is_idempotent_and_an_issued_entry_cannot_be_released():
    store = InMemoryLedgerStore()
    store.reserve(SERIES, ("m1", "ana"), {"a": 1}, candidates=["A1"])
    issued = store.mark(SERIES, ("m1", "ana"), "issued", {"on": "2026-07-05"})
    assert (issued.status, dict(issued.data)) == ("issued", {"a": 1, "on": "2026-07-05"})
    assert store.mark(SERIES, ("m1", "ana"), "issued", {"on": "2026-07-09"}) == issued
    assert store.mark(SERIES, ("m1", "ben"), "issued", {}) is None
    assert not store.release(SERIES, ("m1", "ana"))
    assert store.info(SERIES).items == 1


def test_release_checks_the_item_and_open_keeps_the_first_owner():
    store = InMemoryLedgerStore()
    store.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1"])
    assert not store.release(SERIES, ("m1", "ana"), "ZZ")
    assert store.open(SERIES, "m1", {"cap": 5}).owner == "m1"
    info = store.open(SERIES, "m2", {"cap": 9})
    assert (info.owner, dict(info.settings), info.entries, info.items) == ("m1", {"cap": 5}, 1, 1)
    assert store.info(("coupon", "never")) is None


def test_concurrent_reservations_hand_out_each_item_once():
    store = InMemoryLedgerStore()
    got: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = [store.reserve(SERIES, ("m1", f"{k}-{i}"), {}, candidates=(f"C{j}" for j in range(100_000))).item
                for i in range(300)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 1800
