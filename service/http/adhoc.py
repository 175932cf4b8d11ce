"""Evaluating what a request carries: a message definition with its rulesets inline, customers inline, and the
engine's problems turned into ``{path, code, message}`` items that point into the request body.

Also the caches that make a single-recipient ``POST /api/v1/evaluate`` fast: one engine ``Prepared`` per
(message and rulesets content, instant, options), in a small LRU, each used by one request at a time; and the
answers of the contact fields' checks (phone numbers, e-mail addresses), in a bounded LRU per field.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from engine.audience import CustomerReader, flatten, id_kind_error
from engine.contracts import ContactField
from engine.errors import EngineError, Problem, RuleFileError, ValidationFailed
from engine.fields import FieldCatalogue
from engine.messages import UnresolvedRuleset
from engine.model import Customer, Message
from engine.rulefiles.ir import Ruleset
from engine.rulefiles.loader import load_ruleset_data
from engine.run import Prepared
from engine.runtime import Herald
from service.http.problems import Problem as HttpProblem
from service.http.problems import error, pointer, unprocessable

#: the source name the engine reports a request's message under
MESSAGE_SOURCE = "<message>"
_RULESET_SOURCE = "<ruleset:{}>"


# -- problems → JSON pointers ------------------------------------------------------------------------------


def dotted_parts(path: str) -> list[str | int]:
    """``rules[0].when`` → ``["rules", 0, "when"]`` (the engine's dotted paths)."""
    out: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        out.append(int(index) if index else name)
    return out


def problem_items(problems: Sequence[Problem], sources: Mapping[str, Sequence[str | int]],
                  default: Sequence[str | int] = (),
                  rule_ids: Mapping[str, Mapping[str, int]] | None = None) -> list[dict[str, str]]:
    """The engine's problems as ``{path, code, message}`` items: ``sources`` maps a problem's ``file`` (the
    source name it was loaded under) to the body path of that input; a rule file's problem labelled
    ``<rule id>:<path>`` is placed at that rule (``rule_ids``: per source, rule id → index in ``rules``); line
    and column, when the input was text, are added to the message."""
    items = []
    for p in problems:
        base = sources.get(p.file or "", default)
        ids = (rule_ids or {}).get(p.file or "", {})
        rule, sep, rest = p.path.partition(":")
        parts: list[str | int] = ["rules", ids[rule], *dotted_parts(rest)] if sep and rule in ids else \
            dotted_parts(p.path)
        where = f" (line {p.line}, column {p.column})" if p.line is not None and p.column is not None else ""
        items.append(error(pointer([*base, *parts]), p.code, p.message + where))
    return items


def rule_indexes(data: Any) -> dict[str, int]:
    """Rule id → its index in a rule file's ``rules`` list (given as data)."""
    rules = data.get("rules") if isinstance(data, Mapping) else None
    if not isinstance(rules, list):
        return {}
    return {str(r["id"]): i for i, r in enumerate(rules) if isinstance(r, Mapping) and "id" in r}


# -- a message and its rulesets given inline ---------------------------------------------------------------


@dataclass
class InlineRulesets:
    """A ``RulesetResolver`` over the rulesets a request carries (reference → ruleset data or YAML/JSON text),
    each loaded once against the engine's kinds, channels and field catalogue."""

    herald: Herald
    given: Mapping[str, Any]
    loaded: dict[str, Ruleset] = field(default_factory=dict)

    def __call__(self, ref: str, kind: str) -> Ruleset:
        if ref in self.loaded:
            return self.loaded[ref]
        if ref not in self.given:
            known = ", ".join(sorted(self.given)) or "none"
            raise UnresolvedRuleset(f"no ruleset {ref!r} in the request's rulesets (given: {known})")
        registry = self.herald.registry
        rs = self.loaded[ref] = load_ruleset_data(self.given[ref], self.herald.catalogue, kinds=registry.kinds,
                                                  source=_RULESET_SOURCE.format(ref), channels=set(registry.channels))
        return rs


def content_key(message: Mapping[str, Any], rulesets: Mapping[str, Any]) -> bytes:
    """A message definition and its rulesets as JSON, in the request's key order: the exact content, the key of
    its kept ``Prepared`` (≈ 5 µs for the sample message, against 13 µs for a SHA-256 of sorted JSON; the same
    content in another key order is another key, so another ``Prepared``, never a wrong one)."""
    return msgspec.json.encode((message, rulesets))


def load_inline_message(herald: Herald, message: Mapping[str, Any], rulesets: Mapping[str, Any], *,
                        base: Sequence[str | int] = ("message",)) -> Message:
    """Load a message definition with its rulesets inline (a fresh façade, so nothing accumulates); 422 with
    every problem, each at its place in the body (``/message/…`` or ``/rulesets/<ref>/…``)."""
    engine = Herald(herald.registry, herald.catalogue)
    try:
        return engine.load_message_data(message, resolver=InlineRulesets(herald, rulesets), source=MESSAGE_SOURCE)
    except (ValidationFailed, RuleFileError) as exc:
        sources: dict[str, Sequence[str | int]] = {MESSAGE_SOURCE: tuple(base)}
        sources.update({_RULESET_SOURCE.format(ref): ("rulesets", ref) for ref in rulesets})
        ids = {_RULESET_SOURCE.format(ref): rule_indexes(data) for ref, data in rulesets.items()}
        raise unprocessable("the message cannot be evaluated: " + exc.summary,
                            problem_items(exc.problems, sources, base, ids)) from None


# -- customers given inline --------------------------------------------------------------------------------

#: contact handles (phone numbers, addresses …) whose check is remembered, per contact field, at most
HANDLE_CACHE_SIZE = 20_000


def _remembered(normalise: Callable[..., str], size: int) -> Callable[..., str]:
    """``normalise`` with its last ``size`` answers remembered, refusals (``ValueError``, re-raised with the same
    text) included: a handle's check depends on nothing but the handle and the region."""

    @functools.lru_cache(maxsize=size)
    def outcome(value: str, region: str | None) -> tuple[bool, str]:
        try:
            return True, normalise(value, region=region) if region else normalise(value)
        except ValueError as exc:
            return False, str(exc)

    def check(value: str, region: str | None = None) -> str:
        ok, text = outcome(value, region)
        if ok:
            return text
        raise ValueError(text)

    check.cache_info = outcome.cache_info  # type: ignore[attr-defined]
    return check


_REMEMBERED: dict[tuple[ContactField, int], ContactField] = {}
_REMEMBERED_LOCK = threading.Lock()


def remembered_contacts(contacts: Mapping[str, ContactField],
                        size: int = HANDLE_CACHE_SIZE) -> dict[str, ContactField]:
    """``contacts`` (the catalogue's contact fields) with each field's ``normalise`` and ``handle_type``
    remembering their last ``size`` answers (the same answers: checking the same phone number again costs a
    dictionary look-up instead of ≈ 100 µs of parsing)."""
    out: dict[str, ContactField] = {}
    for name, contact in contacts.items():
        found = _REMEMBERED.get((contact, size))
        if found is None:
            found = dataclasses.replace(
                contact,
                normalise=_remembered(contact.normalise, size) if contact.normalise is not None else None,
                handle_type=functools.lru_cache(maxsize=size)(contact.handle_type)
                if contact.handle_type is not None else None)
            with _REMEMBERED_LOCK:
                found = _REMEMBERED.setdefault((contact, size), found)
        out[name] = found
    return out


#: per field catalogue (immutable once built): the reader of its customer attributes, with remembering contact fields
_CHECKS: weakref.WeakKeyDictionary[FieldCatalogue, CustomerReader] = weakref.WeakKeyDictionary()


def customer_checks(catalogue: FieldCatalogue) -> CustomerReader:
    """The reader of the catalogue's customer attribute types, with :func:`remembered_contacts`, made once per
    catalogue (it keeps each attribute's checks)."""
    found = _CHECKS.get(catalogue)
    if found is None:
        found = CustomerReader(catalogue.customer_types(), remembered_contacts(catalogue.contacts))
        with _REMEMBERED_LOCK:
            found = _CHECKS.setdefault(catalogue, found)
    return found


def inline_customers(herald: Herald, customers: Sequence[Mapping[str, Any]], *,
                     base: str = "customers") -> list[Customer]:
    """Customers given as JSON objects (``id`` and attributes; nested objects are dotted attributes, as in an
    audience JSONL file), typed by the field catalogue; 422 naming each bad one (``/customers/3/tier``) and
    each repeated id."""
    reader = customer_checks(herald.catalogue)
    out: list[Customer] = []
    items: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(customers):
        bad = id_kind_error(raw["id"]) if "id" in raw else None
        if bad is not None:
            items.append(error(pointer([base, i, "id"]), "id_type", bad))
            continue
        got = reader.make(flatten(raw), base, i)
        if isinstance(got, Problem):
            parts = [got.path] if got.path in raw else got.path.split(".")
            items.append(error(pointer([base, i, *parts]), got.code, got.message))
            continue
        if got.id in seen:
            items.append(error(pointer([base, i, "id"]), "duplicate",
                               f"customer id {got.id!r} is also at /{base}/{seen[got.id]}"))
            continue
        seen[got.id] = i
        out.append(got)
    if items:
        raise unprocessable(f"{len(items)} customer(s) cannot be evaluated", items)
    return out


# -- the engine's run-time refusals ------------------------------------------------------------------------


def engine_refusal(exc: EngineError, base: Sequence[str | int] = ("message",)) -> HttpProblem:
    """A 422 for what the engine refuses while evaluating (a send in the past, a mode that cannot serve the
    options, an incentive that cannot serve the run)."""
    if isinstance(exc, ValidationFailed):
        return unprocessable(exc.summary, problem_items(exc.problems, {}, base))
    return unprocessable(str(exc), [error(pointer(base), type(exc).__name__, str(exc))])


# -- the Prepared cache ------------------------------------------------------------------------------------


class DecisionLedger:
    """A ledger store for a kept ``Prepared``: every call goes to ``store``, except that while one decision is
    made (inside :meth:`decision`) the ledgers are read at most once each: the first ``info`` of a ledger
    reads, in one statement when the store can (``peek``), its row and the decision's holder's entry (a coupon
    preview's check before the decision, its look-up of the code already held and its count read one
    snapshot). A write (``open``, ``reserve``, ``mark``, ``release``) forgets what was read; nothing is kept
    between decisions."""

    def __init__(self, store: Any):
        self.store = store
        self._read: dict[Any, Any] | None = None
        self._entries: dict[tuple[Any, Any], Any] = {}
        self._holder: Any = None
        self._peek: Callable[[Any, Any], tuple[Any, Any]] | None = getattr(store, "peek", None)
        #: whether anything was ever asked of the store through this ledger
        self.used = False

    @contextmanager
    def decision(self, holder: Any = None) -> Iterator[None]:
        """Reads shared for the duration of the block (one decision, of ``holder``: ``(message id, customer
        id)``, whose entries are read with their ledger's info when given)."""
        self.begin(holder)
        try:
            yield
        finally:
            self.end()

    def begin(self, holder: Any = None) -> None:
        """The start of :meth:`decision` (call :meth:`end` after, in a ``finally``: a plain call is cheaper than
        a context manager on the per-request path)."""
        self._read, self._holder = {}, holder

    def end(self) -> None:
        """The end of :meth:`decision`: nothing read is kept."""
        self._read, self._holder = None, None
        self._entries.clear()

    def info(self, ledger: Any) -> Any:
        """See ``LedgerStore.info`` (read once per decision)."""
        self.used = True
        if self._read is None:
            return self.store.info(ledger)
        if ledger not in self._read:
            if self._holder is not None and self._peek is not None:
                self._read[ledger], self._entries[(ledger, self._holder)] = self._peek(ledger, self._holder)
            else:
                self._read[ledger] = self.store.info(ledger)
        return self._read[ledger]

    def entry(self, ledger: Any, holder: Any) -> Any:
        """See ``LedgerStore.entry`` (the decision's holder's entry as read with its ledger's info)."""
        self.used = True
        if self._read is not None and (ledger, holder) in self._entries:
            return self._entries[(ledger, holder)]
        return self.store.entry(ledger, holder)

    def _wrote(self) -> None:
        self.used = True
        if self._read is not None:
            self._read.clear()
        self._entries.clear()

    def open(self, ledger: Any, owner: str, settings: Mapping[str, Any]) -> Any:
        """See ``LedgerStore.open``."""
        self._wrote()
        return self.store.open(ledger, owner, settings)

    def reserve(self, ledger: Any, holder: Any, data: Mapping[str, Any], *, candidates: Iterable[str] | None = None,
                cap: int | None = None, space: int | None = None) -> Any:
        """See ``LedgerStore.reserve``."""
        self._wrote()
        return self.store.reserve(ledger, holder, data, candidates=candidates, cap=cap, space=space)

    def mark(self, ledger: Any, holder: Any, status: str, data: Mapping[str, Any]) -> Any:
        """See ``LedgerStore.mark``."""
        self._wrote()
        return self.store.mark(ledger, holder, status, data)

    def release(self, ledger: Any, holder: Any, item: str | None = None) -> bool:
        """See ``LedgerStore.release``."""
        self._wrote()
        return self.store.release(ledger, holder, item)


@dataclass
class _Entry:
    prepared: Prepared
    ledger: DecisionLedger | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def holder(self, customer: Customer) -> tuple[str, str]:
        """The ledger holder of ``customer``'s decision: ``(message id, customer id)``."""
        return (self.prepared.message.id, customer.id)

    @property
    def reads_ledger(self) -> bool:
        """Whether a decision may read the incentive ledgers: the message has an incentive, or a decision of
        this entry has used the ledger already (a plugin reading ``ctx.ledger`` without one)."""
        return self.ledger is not None and (self.prepared.message.incentive is not None or self.ledger.used)


class PreparedCache:
    """At most ``size`` engine ``Prepared`` objects, least recently used dropped first, keyed by the message's
    content, the instant and the options. :meth:`decide` uses an entry under its own lock (a ``Prepared``
    keeps one evaluation context: one request at a time)."""

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def cached(self, key: tuple[Any, ...]) -> _Entry | None:
        """The entry for ``key`` when there is one (a hit), else ``None`` (nothing is counted)."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return found

    def get(self, key: tuple[Any, ...], make: Callable[[], tuple[Prepared, DecisionLedger | None]]) -> _Entry:
        """The entry for ``key``, made by ``make()`` (the ``Prepared`` and the :class:`DecisionLedger` it was
        prepared with, if any) when missing, outside the cache's lock."""
        found = self.cached(key)
        if found is not None:
            return found
        with self._lock:
            self.misses += 1
        entry = _Entry(*make())
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return entry

    @staticmethod
    def decide(entry: _Entry, customer: Customer) -> Any:
        """``entry``'s decision for ``customer``, as a run of that one recipient makes it (the engine starts
        each call afresh), under the entry's lock: a ``Prepared`` is not thread-safe."""
        with entry.lock:
            return PreparedCache._decide(entry, customer)

    @staticmethod
    def decide_if_free(entry: _Entry, customer: Customer) -> Any | None:
        """:meth:`decide` when the entry's lock is free now, else ``None`` at once (never waits: for the event
        loop)."""
        if not entry.lock.acquire(blocking=False):
            return None
        try:
            return PreparedCache._decide(entry, customer)
        finally:
            entry.lock.release()

    @staticmethod
    def _decide(entry: _Entry, customer: Customer) -> Any:
        ledger = entry.ledger
        if ledger is None:
            return entry.prepared.decide(customer)
        ledger.begin(entry.holder(customer))  # DecisionLedger.decision, without a generator
        try:
            return entry.prepared.decide(customer)
        finally:
            ledger.end()


def prepared_key(content: Hashable, at: datetime, explain: bool, render: bool) -> tuple[Any, ...]:
    """The cache key of a message's content (:func:`content_key`, or the request's text of it: see
    ``service.http.routes.evaluation.text_key``), the instant and the options."""
    return (content, at.isoformat(), explain, render)
