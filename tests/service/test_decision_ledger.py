"""The ledger of a kept single-recipient ``Prepared``: within one decision a ledger's info is read from the
database once; a write inside the decision, or any change between decisions, is seen (nothing stale is
served); on SQLite and PostgreSQL."""

from __future__ import annotations

from service.http.adhoc import DecisionLedger
from service.storage.ledger import DbLedgerStore

KEY = ("coupon", "series-a")


class Counting(DbLedgerStore):
    """The real store, counting its ``info`` reads."""

    reads = 0

    def info(self, ledger):
        self.reads += 1
        return super().info(ledger)


def test_info_is_read_once_per_decision_and_never_kept_between_decisions(db_engine, org):
    store = Counting(db_engine, org.org_id)
    ledger = DecisionLedger(store)
    store.open(KEY, "msg-1", {"cap": 2})
    with ledger.decision():
        first = ledger.info(KEY)
        assert ledger.info(KEY) == first and store.reads == 1
        assert first is not None and first.entries == 0
    DbLedgerStore(db_engine, org.org_id).reserve(KEY, ("msg-1", "c1"), {})  # another writer, between decisions
    with ledger.decision():
        assert ledger.info(KEY).entries == 1 and store.reads == 2
    assert ledger.info(KEY).entries == 1 and ledger.info(KEY).entries == 1 and store.reads == 4  # outside: each call


def test_a_write_inside_a_decision_forgets_what_was_read(db_engine, org):
    store = Counting(db_engine, org.org_id)
    ledger = DecisionLedger(store)
    ledger.open(KEY, "msg-1", {"cap": 2})
    with ledger.decision():
        assert ledger.info(KEY).entries == 0
        entry = ledger.reserve(KEY, ("msg-1", "c1"), {"x": 1})
        assert entry.status == "reserved" and ledger.entry(KEY, ("msg-1", "c1")) == entry
        assert ledger.info(KEY).entries == 1
        assert ledger.mark(KEY, ("msg-1", "c1"), "issued", {}).status == "issued"
        assert ledger.release(KEY, ("msg-1", "c1")) is False  # issued entries are not released
    assert store.reads == 2
