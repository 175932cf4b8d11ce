"""The database ledger store meets the engine's ``LedgerStore`` contract (the same checks as the in-memory store's
tests/engine/test_stores.py), on SQLite and PostgreSQL, under threads, and per org."""

from __future__ import annotations

import itertools
import threading

import pytest
from sqlmodel import Session, select

from engine import LedgerFull, LedgerStore
from service.storage.ledger import DbLedgerStore
from service.storage.tables import Ledger, LedgerEntryRow
from tests.service.conftest import make_org

SERIES = ("coupon", "summer")


@pytest.fixture
def store(db_engine, org) -> DbLedgerStore:
    return DbLedgerStore(db_engine, org.org_id)


def test_it_meets_the_protocol(store):
    assert isinstance(store, LedgerStore)


def test_a_holder_gets_one_entry_and_reserving_again_returns_it(store):
    first = store.reserve(SERIES, ("m1", "ana"), {"n": 1}, candidates=iter(["A", "B"]))
    again = store.reserve(SERIES, ("m1", "ana"), {"n": 2}, candidates=iter(["B"]))
    assert again == first and (first.item, first.status, dict(first.data)) == ("A", "reserved", {"n": 1})
    assert store.entry(SERIES, ("m1", "ana")) == first
    assert store.entry(SERIES, ("m2", "ana")) is None  # the holder is (message, customer)


def test_an_item_is_never_held_by_two_holders_and_a_release_frees_it(store):
    a = store.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1", "B2"])
    b = store.reserve(SERIES, ("m1", "ben"), {}, candidates=["A1", "B2"])
    assert (a.item, b.item) == ("A1", "B2")
    with pytest.raises(LedgerFull) as full:
        store.reserve(SERIES, ("m1", "cai"), {}, candidates=["A1", "B2"])
    assert full.value.limit == "items"
    assert store.release(SERIES, ("m1", "ana"), "A1")
    assert store.reserve(SERIES, ("m1", "cai"), {}, candidates=["A1", "B2"]).item == "A1"
    assert (store.info(SERIES).entries, store.info(SERIES).items) == (2, 2)


def test_cap_and_space_are_checked_with_the_insert(store):
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


def test_a_full_ledger_refuses_and_changes_nothing(store):
    store.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1"], cap=1)
    with pytest.raises(LedgerFull):
        store.reserve(SERIES, ("m1", "ben"), {}, candidates=["B1"], cap=1)
    assert store.entry(SERIES, ("m1", "ben")) is None
    assert (store.count(), store.held_items()) == (1, 1)


def test_mark_is_idempotent_and_an_issued_entry_cannot_be_released(store):
    store.reserve(SERIES, ("m1", "ana"), {"a": 1}, candidates=["A1"])
    issued = store.mark(SERIES, ("m1", "ana"), "issued", {"on": "2026-07-05"})
    assert issued is not None
    assert (issued.status, dict(issued.data)) == ("issued", {"a": 1, "on": "2026-07-05"})
    assert store.mark(SERIES, ("m1", "ana"), "issued", {"on": "2026-07-09"}) == issued
    assert store.entry(SERIES, ("m1", "ana")) == issued  # stored, not only returned
    assert store.mark(SERIES, ("m1", "ben"), "issued", {}) is None
    assert store.mark(("coupon", "never"), ("m1", "ana"), "issued", {}) is None
    assert not store.release(SERIES, ("m1", "ana"))
    assert store.info(SERIES).items == 1


def test_release_checks_the_item_and_open_keeps_the_first_owner(store):
    store.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1"])
    assert not store.release(SERIES, ("m1", "ana"), "ZZ")
    assert not store.release(("coupon", "never"), ("m1", "ana"))
    assert store.open(SERIES, "m1", {"cap": 5}).owner == "m1"
    info = store.open(SERIES, "m2", {"cap": 9})
    assert (info.owner, dict(info.settings), info.entries, info.items) == ("m1", {"cap": 5}, 1, 1)
    assert store.info(("coupon", "never")) is None


def test_a_ledger_used_before_it_is_opened_has_no_owner_until_opened(store):
    store.reserve(("points", "m1"), ("m1", "ana"), {"points": 10})
    info = store.info(("points", "m1"))
    assert (info.owner, dict(info.settings), info.entries, info.items) == ("", {}, 1, 0)
    assert store.open(("points", "m1"), "m1", {"per": 10}).owner == "m1"


def test_each_org_has_its_own_ledgers(db_engine, store):
    theirs = DbLedgerStore(db_engine, make_org(db_engine).org_id)
    store.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1"], cap=1)
    assert theirs.info(SERIES) is None and theirs.entry(SERIES, ("m1", "ana")) is None
    assert theirs.reserve(SERIES, ("m1", "ana"), {}, candidates=["A1"], cap=1).item == "A1"
    assert not theirs.release(SERIES, ("m1", "zed"))
    assert store.count() == theirs.count() == 1


def _run_threads(n: int, worker) -> None:
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_reservations_hand_out_each_item_once(store):
    got: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = [store.reserve(SERIES, ("m1", f"{k}-{i}"), {}, candidates=(f"C{j}" for j in range(100_000))).item
                for i in range(25)]
        with lock:
            got.extend(mine)

    _run_threads(6, worker)
    assert len(got) == len(set(got)) == 150
    assert store.held_items() == 150


def test_threads_reserving_past_a_cap_never_over_issue(db_engine, store):
    granted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    capped = ("coupon", "capped")

    def worker(k: int) -> None:
        for i in range(10):
            who = f"{k}-{i}"
            try:
                entry = store.reserve(capped, ("m1", who), {}, candidates=(f"K{j}" for j in range(1000)), cap=17)
            except LedgerFull as exc:
                assert exc.limit == "cap"
                with lock:
                    refused.append(who)
                continue
            assert entry.item is not None
            with lock:
                granted.append(entry.item)

    _run_threads(6, worker)
    assert len(granted) == len(set(granted)) == 17 and len(refused) == 60 - 17
    with Session(db_engine) as s:
        row = s.exec(select(Ledger).where(Ledger.key == "capped", Ledger.org_id == store.org_id)).one()
        stored = s.exec(select(LedgerEntryRow).where(LedgerEntryRow.ledger_id == row.id)).all()
    assert (row.entries, row.items, len(stored)) == (17, 17, 17)


def test_peek_reads_the_ledger_and_one_holders_entry_as_info_and_entry_do(store, db_engine):
    holder = ("m1", "ana")
    assert store.peek(SERIES, holder) == (None, None)  # a ledger never opened
    store.open(SERIES, "m1", {"source": "list", "codes": ["A", "B"], "cap": 2})
    assert store.peek(SERIES, holder) == (store.info(SERIES), None)
    store.reserve(SERIES, holder, {"note": {"nested": [1, "x"]}}, candidates=["A", "B"])
    store.reserve(SERIES, ("m1", "ben"), {}, candidates=["A", "B"])
    info, entry = store.peek(SERIES, holder)
    assert (info, entry) == (store.info(SERIES), store.entry(SERIES, holder))
    assert info is not None and (info.entries, info.items, dict(info.settings)["codes"]) == (2, 2, ["A", "B"])
    assert entry is not None and (entry.item, entry.status, dict(entry.data)) == ("A", "reserved", {"note": {"nested": [1, "x"]}})
    assert store.peek(SERIES, ("m2", "ana")) == (info, None)  # another message's holder: no entry
    store.mark(SERIES, holder, "issued", {"on": "2026-07-04"})
    assert store.peek(SERIES, holder)[1] == store.entry(SERIES, holder)  # nothing remembered between reads
    theirs = DbLedgerStore(db_engine, make_org(db_engine).org_id)
    assert theirs.peek(SERIES, holder) == (None, None)  # another org sees nothing of this one's ledger
