"""Where incentive ledgers live: the ``LedgerStore`` protocol and the in-memory store (the library's default).

Incentive types (coupon codes, points) hold no state of their own; they keep it in a ledger store reached
through the context of each call (``EvaluationContext.ledger`` for ``reserve``, ``IncentiveContext.ledger``
for ``issue`` and ``release``). The service passes a database implementation; every operation is atomic for
its ledger, so a database can implement it with two unique constraints and a row lock:

* one entry per ``(ledger, holder)`` — a holder is ``(message id, customer id)``: reserving again returns
  the entry already there;
* one entry per ``(ledger, item)`` among entries that hold an item (a coupon code): an item is never held
  by two holders; releasing an entry frees its item;
* the ``cap`` and ``space`` checks of :meth:`LedgerStore.reserve` count the ledger's entries and items in
  the same transaction as the insert (lock the ledger's row).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

from engine.errors import EngineError
from engine.model import EMPTY

#: a ledger's key: the incentive kind and its own key (a coupon series, a message id)
LedgerKey = tuple[str, str]
#: who holds an entry: (message id, customer id)
Holder = tuple[str, str]


class LedgerFull(EngineError):
    """A reservation the ledger cannot make: its ``cap`` of entries is reached (``limit="cap"``) or no item
    is left (``limit="items"``)."""

    def __init__(self, limit: Literal["cap", "items"], ledger: LedgerKey):
        super().__init__(f"ledger {ledger[0]}:{ledger[1]} is full ({limit})")
        self.limit = limit
        self.ledger = ledger


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What one holder has in one ledger: the exclusive item (a coupon code, or ``None``), a status
    (``reserved`` when created; the incentive type names later ones) and the type's own data."""

    holder: Holder
    item: str | None
    status: str
    data: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """A ledger's owner and settings (as first recorded by :meth:`LedgerStore.open`) and its counts."""

    owner: str
    settings: Mapping[str, Any]
    entries: int
    items: int


@runtime_checkable
class LedgerStore(Protocol):
    """Incentive ledgers, each operation atomic per ledger (see the module docstring)."""

    def open(self, ledger: LedgerKey, owner: str, settings: Mapping[str, Any]) -> LedgerInfo:
        """Record the ledger's owner and settings unless it has them already; return what is recorded."""
        ...

    def info(self, ledger: LedgerKey) -> LedgerInfo | None:
        """The ledger's owner, settings and counts; ``None`` when it has never been opened or used."""
        ...

    def entry(self, ledger: LedgerKey, holder: Holder) -> LedgerEntry | None:
        """The holder's entry, if any."""
        ...

    def reserve(self, ledger: LedgerKey, holder: Holder, data: Mapping[str, Any], *,
                candidates: Iterable[str] | None = None, cap: int | None = None,
                space: int | None = None) -> LedgerEntry:
        """The holder's entry: the existing one unchanged, else a new ``reserved`` entry with ``data``.

        A new entry takes the first of ``candidates`` no other entry holds (``None``: the entry holds no
        item). Raises :class:`LedgerFull` when the ledger already has ``cap`` entries, ``space`` items, or
        when ``candidates`` run out.
        """
        ...

    def mark(self, ledger: LedgerKey, holder: Holder, status: str, data: Mapping[str, Any]) -> LedgerEntry | None:
        """Move the holder's entry to ``status``, merging ``data``; an entry already in ``status`` is returned
        unchanged (so marking twice is harmless). ``None`` when the holder has no entry."""
        ...

    def release(self, ledger: LedgerKey, holder: Holder, item: str | None = None) -> bool:
        """Delete the holder's entry if it is still ``reserved`` (and holds ``item``, when given), freeing its
        item. True when an entry was released."""
        ...


@dataclass
class _Ledger:
    owner: str = ""
    settings: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    entries: dict[Holder, LedgerEntry] = field(default_factory=dict)
    items: set[str] = field(default_factory=set)

    def info(self) -> LedgerInfo:
        return LedgerInfo(self.owner, self.settings, len(self.entries), len(self.items))


class InMemoryLedgerStore:
    """A :class:`LedgerStore` in this process's memory (thread-safe): the default of a registry, lost on exit."""

    def __init__(self) -> None:
        self._ledgers: dict[LedgerKey, _Ledger] = {}
        self._lock = threading.Lock()

    def open(self, ledger: LedgerKey, owner: str, settings: Mapping[str, Any]) -> LedgerInfo:
        """See :meth:`LedgerStore.open`."""
        with self._lock:
            found = self._ledgers.setdefault(ledger, _Ledger())
            if not found.owner:
                found.owner, found.settings = owner, MappingProxyType(dict(settings))
            return found.info()

    def info(self, ledger: LedgerKey) -> LedgerInfo | None:
        """See :meth:`LedgerStore.info`."""
        with self._lock:
            found = self._ledgers.get(ledger)
            return found.info() if found is not None else None

    def entry(self, ledger: LedgerKey, holder: Holder) -> LedgerEntry | None:
        """See :meth:`LedgerStore.entry`."""
        with self._lock:
            found = self._ledgers.get(ledger)
            return found.entries.get(holder) if found is not None else None

    def reserve(self, ledger: LedgerKey, holder: Holder, data: Mapping[str, Any], *,
                candidates: Iterable[str] | None = None, cap: int | None = None,
                space: int | None = None) -> LedgerEntry:
        """See :meth:`LedgerStore.reserve`."""
        with self._lock:
            found = self._ledgers.setdefault(ledger, _Ledger())
            held = found.entries.get(holder)
            if held is not None:
                return held
            if cap is not None and len(found.entries) >= cap:
                raise LedgerFull("cap", ledger)
            item = None
            if candidates is not None:
                if space is not None and len(found.items) >= space:
                    raise LedgerFull("items", ledger)
                item = next((c for c in candidates if c not in found.items), None)
                if item is None:
                    raise LedgerFull("items", ledger)
                found.items.add(item)
            entry = found.entries[holder] = LedgerEntry(holder, item, "reserved", MappingProxyType(dict(data)))
            return entry

    def mark(self, ledger: LedgerKey, holder: Holder, status: str, data: Mapping[str, Any]) -> LedgerEntry | None:
        """See :meth:`LedgerStore.mark`."""
        with self._lock:
            found = self._ledgers.get(ledger)
            held = found.entries.get(holder) if found is not None else None
            if found is None or held is None or held.status == status:
                return held
            entry = found.entries[holder] = replace(held, status=status,
                                                    data=MappingProxyType({**held.data, **data}))
            return entry

    def release(self, ledger: LedgerKey, holder: Holder, item: str | None = None) -> bool:
        """See :meth:`LedgerStore.release`."""
        with self._lock:
            found = self._ledgers.get(ledger)
            held = found.entries.get(holder) if found is not None else None
            if found is None or held is None or held.status != "reserved" or (item is not None and held.item != item):
                return False
            del found.entries[holder]
            if held.item is not None:
                found.items.discard(held.item)
            return True

    def count(self) -> int:
        """Entries across every ledger (the contract kit checks that a preview adds none)."""
        with self._lock:
            return sum(len(found.entries) for found in self._ledgers.values())

    def held_items(self) -> int:
        """Items held across every ledger (the contract kit checks that ``release`` frees them)."""
        with self._lock:
            return sum(len(found.items) for found in self._ledgers.values())
