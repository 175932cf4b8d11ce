"""One way in: ``Herald.evaluate`` → a :class:`Run`, decided by one of two execution modes.

*Evaluator* is the rule interpreter (``compiled``, ``reference``, ``durable``, ``columnar`` or any registered
one); *mode* is the execution strategy:

- ``per_recipient`` (:class:`PerRecipientStrategy`): the pipeline decides one recipient at a time with the
  evaluator; it alone can trace (``explain``), render, reserve for real (``preview=False``) and run the
  ``enrich_facts`` / ``check_delivery`` / ``engine_event`` hooks.
- ``bulk`` (:class:`engine.columnar.bulk.BulkStrategy`): the columnar plan decides the whole audience frame
  at once, with the same decisions. It serves the evaluators registered with the ``bulk`` mode
  (``compiled``, whose answers the plan reproduces, and ``columnar``, which runs only in bulk).
- ``auto`` (the default): bulk when the evaluator has a bulk form, the plan supports the message and the
  options (:func:`engine.columnar.plan.unsupported`) and the audience has more than
  ``HERALD_COLUMNAR_THRESHOLD`` recipients (default 20,000); per recipient otherwise. An evaluator that runs
  only in bulk (``columnar``) makes ``auto`` mean bulk whatever the size.

:func:`choose_mode` is the one place that decides. An explicit mode (or the ``columnar`` evaluator) that
cannot serve the options raises :class:`engine.errors.ModeError` saying why: there is no silent switch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.contracts import Evaluator
from engine.decision_frame import decision_line, frame_of
from engine.errors import EngineError, ModeError
from engine.model import Customer, Decision, Message
from engine.registry import Registry
from engine.scheduling import next_runs
from engine.stores import LedgerStore
from engine.summary import SUMMARY_COLUMNS, Summary, summarize

if TYPE_CHECKING:
    import polars as pl

AUTO, PER_RECIPIENT, BULK = "auto", "per_recipient", "bulk"
MODES = (AUTO, PER_RECIPIENT, BULK)
#: how many upcoming runs of a recurring message a run lists
NEXT_RUNS = 5
DEFAULT_THRESHOLD = 20_000
#: decisions per NDJSON batch (and per decision frame on the per-recipient path)
BATCH = 10_000

def threshold() -> int:
    """Audiences larger than this are decided in bulk under ``auto`` (``HERALD_COLUMNAR_THRESHOLD``, default
    20,000; a value that is not a number is ignored)."""
    try:
        return int(os.environ.get("HERALD_COLUMNAR_THRESHOLD", DEFAULT_THRESHOLD))
    except ValueError:
        return DEFAULT_THRESHOLD


def choose_mode(mode: str, *, evaluator: str, evaluator_modes: Sequence[str], size: int,
                why_not_bulk: Callable[[], str | None], limit: int | None = None) -> tuple[str, str]:
    """The execution mode of a run and why: ``(per_recipient | bulk, reason)``.

    :param mode: ``auto``, ``per_recipient`` or ``bulk``.
    :param evaluator_modes: the modes the evaluator runs in (:attr:`engine.contracts.EvaluatorSpec.modes`).
    :param size: the number of recipients.
    :param why_not_bulk: why the bulk plan cannot serve this message and these options (``None``: it can);
        called only when bulk is considered.
    :param limit: the ``auto`` threshold (default :func:`threshold`).
    :raises ModeError: the mode is unknown, or cannot serve the evaluator or the options.
    """
    if mode not in MODES:
        raise ModeError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == PER_RECIPIENT:
        if PER_RECIPIENT not in evaluator_modes:
            raise ModeError(f"the {evaluator} evaluator runs only in bulk mode; use mode bulk (or auto), or an "
                            "evaluator such as compiled for per-recipient mode")
        return PER_RECIPIENT, "asked for"
    if mode == BULK or PER_RECIPIENT not in evaluator_modes:
        if BULK not in evaluator_modes:
            raise ModeError(f"bulk mode cannot run the {evaluator} evaluator (it has no columnar form); use mode "
                            "per_recipient (or auto), or the compiled evaluator")
        reason = why_not_bulk()
        if reason is not None:
            asked = "bulk mode" if mode == BULK else f"the {evaluator} evaluator (bulk mode only)"
            raise ModeError(f"{asked} cannot serve this run: {reason}; use mode per_recipient"
                            + (" with another evaluator" if mode != BULK else ""))
        return BULK, "asked for" if mode == BULK else f"the {evaluator} evaluator runs in bulk"
    # auto
    if BULK not in evaluator_modes:
        return PER_RECIPIENT, f"the {evaluator} evaluator has no bulk form"
    limit = threshold() if limit is None else limit
    if size <= limit:
        return PER_RECIPIENT, f"{size:,} recipients, not above the bulk threshold {limit:,}"
    reason = why_not_bulk()
    if reason is not None:
        return PER_RECIPIENT, f"the bulk plan cannot serve this run: {reason}"
    return BULK, f"{size:,} recipients, above the bulk threshold {limit:,}"


class Strategy:
    """What both execution modes offer a :class:`Run`. Each output method decides the audience once, in
    order; :attr:`summary` is set when a pass has finished."""

    mode = ""

    def __init__(self, message: Message, registry: Registry):
        self.message = message
        self.registry = registry
        self.costs = {name: reg.obj.cost for name, reg in registry.channels.items()}
        self.rules_versions = MappingProxyType({rs.name: rs.version for rs in message.rulesets.values()})
        self._summary: Summary | None = None
        #: how many recipients have been decided so far
        self.decided = 0

    @property
    def summary(self) -> Summary | None:
        """The summary, once a pass over the whole audience has finished (made on first use, so that a
        request deciding one recipient and never asking for it does not pay for it)."""
        if self._summary is None:
            self._summary = self._summarize()
        return self._summary

    @summary.setter
    def summary(self, value: Summary | None) -> None:
        self._summary = value

    def _summarize(self) -> Summary | None:
        """The summary of a finished pass not made yet (``None``: no pass has finished)."""
        return None

    @property
    def size(self) -> int:
        """The number of recipients."""
        raise NotImplementedError

    def decisions(self) -> Iterator[Decision]:
        """Decision objects, in audience order."""
        raise NotImplementedError

    def frames(self) -> Iterator[pl.DataFrame]:
        """Decision frames (:mod:`engine.decision_frame`), in audience order."""
        raise NotImplementedError

    def ndjson(self, batch: int) -> Iterator[str]:
        """NDJSON text, ``batch`` lines at a time or more; every piece ends with a newline."""
        raise NotImplementedError

    def count(self) -> None:
        """Decide everything, for the summary only."""
        raise NotImplementedError


class PerRecipientStrategy(Strategy):
    """Decides one recipient at a time with :class:`engine.pipeline.Pipeline`; rows of an audience frame
    become Customer objects one by one."""

    mode = PER_RECIPIENT

    def __init__(self, message: Message, registry: Registry, audience: Any, *, at: datetime,
                 evaluator: str | Evaluator = "compiled", explain: bool = False, render: bool = False,
                 preview: bool = True, history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 ledger: LedgerStore | None = None, default_tz: str = "UTC"):
        from engine.pipeline import Pipeline

        super().__init__(message, registry)
        self.audience = audience
        self._columns: dict[str, list[Any]] | None = None  # the summary's columns, once a pass has finished
        self.pipeline = Pipeline(message, registry, at=at, evaluator=evaluator, explain=explain, render=render,
                                 preview=preview, history=history, default_tz=default_tz, ledger=ledger)

    @property
    def size(self) -> int:
        """The number of recipients."""
        return _size(self.audience)

    def _customers(self) -> Iterator[Customer]:
        if _is_frame(self.audience):
            from engine.columnar.decisions import customer_of

            for row in self.audience.iter_rows(named=True):
                yield customer_of(row)
        else:
            yield from self.audience

    def _summarize(self) -> Summary | None:
        cols, self._columns = self._columns, None
        if cols is None:
            return None
        import polars as pl

        return summarize(pl.DataFrame(cols, schema={"included": pl.Boolean, "excluded_reason": pl.String,
                                                    "variant": pl.String, "channel": pl.String}), self.costs)

    def decisions(self) -> Iterator[Decision]:
        """Decision objects, in audience order; the summary is made from them after the last is out."""
        cols: dict[str, list[Any]] = {k: [] for k in SUMMARY_COLUMNS}
        included, reason, variant, channel = (cols[k].append for k in SUMMARY_COLUMNS)
        for d in self.pipeline.run(self._customers(), size=self.size):
            included(d.included)
            reason(d.excluded_reason)
            variant(d.variant)
            channel(d.channel)
            self.decided += 1
            yield d
        self._columns = cols

    def _batches(self, batch: int) -> Iterator[list[Decision]]:
        out: list[Decision] = []
        for d in self.decisions():
            out.append(d)
            if len(out) >= batch:
                yield out
                out = []
        if out:
            yield out

    def frames(self) -> Iterator[pl.DataFrame]:
        """Decision frames of :data:`BATCH` decisions."""
        for part in self._batches(BATCH):
            yield frame_of(part, self.message, self.registry.kinds)

    def ndjson(self, batch: int) -> Iterator[str]:
        """One ``json.dumps`` per decision (:func:`engine.decision_frame.decision_line`)."""
        for part in self._batches(batch):
            yield "\n".join(decision_line(d) for d in part) + "\n"

    def count(self) -> None:
        """Decide everything, for the summary only."""
        for _ in self.decisions():
            pass


class Run:
    """The decisions of one message for one audience, and their summary.

    Read the decisions once, in one of three forms: objects (``for d in run`` or :meth:`decisions`), a polars
    frame (:meth:`frame`) or NDJSON text (:meth:`ndjson`). :meth:`summary` is available after that pass
    (or, called first, decides everything for the summary alone). Deciding happens while the output is read,
    so incentives are reserved once, in audience order.
    """

    def __init__(self, strategy: Strategy, *, why: str, next_runs: Sequence[datetime] = ()):
        self.strategy = strategy
        #: the execution mode that decides: ``per_recipient`` or ``bulk``
        self.mode = strategy.mode
        #: why that mode (from :func:`choose_mode`)
        self.why = why
        #: a recurring message's next runs at or after "now" (the first is the one evaluated); else empty
        self.next_runs = tuple(next_runs)
        #: ruleset name → version of the message's rulesets
        self.rules_versions = strategy.rules_versions
        self._taken = False

    @property
    def size(self) -> int:
        """The number of recipients."""
        return self.strategy.size

    @property
    def decided(self) -> int:
        """How many recipients have been decided so far (for progress)."""
        return self.strategy.decided

    def _take(self) -> None:
        if self._taken:
            raise EngineError("a Run's decisions can be read once; keep them (list(run), run.frame()) or "
                              "evaluate again")
        self._taken = True

    def __iter__(self) -> Iterator[Decision]:
        return self.decisions()

    def decisions(self) -> Iterator[Decision]:
        """The decisions as objects, in audience order."""
        self._take()
        return self.strategy.decisions()

    def frame(self) -> pl.DataFrame:
        """The decisions as one polars frame (:mod:`engine.decision_frame` describes its columns)."""
        import polars as pl

        from engine.decision_frame import frame_schema, ruleset_order

        self._take()
        parts = list(self.strategy.frames())
        if not parts:
            return pl.DataFrame(schema=frame_schema(ruleset_order(self.strategy.message, self.strategy.registry.kinds)))
        return pl.concat(parts, how="vertical")

    def ndjson(self, batch: int = BATCH) -> Iterator[str]:
        """The decisions as NDJSON text, about ``batch`` lines per piece (each piece ends with a newline).
        The bytes are the same in both modes."""
        self._take()
        return self.strategy.ndjson(batch)

    def summary(self) -> Summary:
        """The counts and estimated cost; called before reading the decisions, it decides them all without
        keeping them (and they cannot be read afterwards)."""
        if not self._taken:
            self._take()
            self.strategy.count()
        if self.strategy.summary is None:
            raise EngineError("the summary needs every decision: read the run to its end first")
        return self.strategy.summary


def _is_frame(audience: Any) -> bool:
    return hasattr(audience, "iter_rows") and hasattr(audience, "height")


def _size(audience: Any) -> int:
    return audience.height if _is_frame(audience) else len(audience)


def evaluator_modes(registry: Registry, evaluator: str | Evaluator) -> tuple[str, ...]:
    """The modes ``evaluator`` runs in: a registered one's (``UnknownReference`` for an unknown name), and
    per recipient only for an Evaluator object."""
    if not isinstance(evaluator, str):
        return (PER_RECIPIENT,)
    if evaluator not in registry.evaluators:
        registry.evaluator(evaluator)  # raises UnknownReference listing the registered ones
    return tuple(registry.evaluators[evaluator].obj.modes)


def start_run(
    registry: Registry,
    message: Message,
    audience: Any,
    *,
    at: datetime,
    mode: str = AUTO,
    evaluator: str | Evaluator = "compiled",
    explain: bool = False,
    render: bool = False,
    preview: bool = True,
    history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    default_tz: str = "UTC",
    ledger: LedgerStore | None = None,
) -> Run:
    """The work of ``Herald.evaluate`` (see :meth:`engine.runtime.Herald.evaluate`) for a registry."""
    if not _is_frame(audience) and not isinstance(audience, Sequence):
        audience = list(audience)
    name = evaluator if isinstance(evaluator, str) else getattr(evaluator, "name", type(evaluator).__name__)
    modes = evaluator_modes(registry, evaluator)
    converted: list[Any] = []

    def why_not_bulk() -> str | None:
        from engine.columnar import frame_from_customers, unsupported

        reason = unsupported(message, registry, explain=explain, render=render, preview=preview, slow_reach=False)
        if reason is not None or _is_frame(audience):
            return reason
        try:
            converted.append(frame_from_customers(audience))
        except (ValueError, TypeError) as exc:
            return f"the audience cannot be read as columns ({exc})"
        return None

    chosen, why = choose_mode(mode, evaluator=name, evaluator_modes=modes, size=_size(audience),
                              why_not_bulk=why_not_bulk)
    options = {"at": at, "preview": preview, "history": history, "ledger": ledger, "default_tz": default_tz}
    strategy: Strategy
    if chosen == BULK:
        from engine.columnar.bulk import BulkStrategy

        frame: Any = converted[0] if converted else audience  # a frame: bulk takes no other audience
        strategy = BulkStrategy(message, registry, frame, **options)
    else:
        strategy = PerRecipientStrategy(message, registry, audience, evaluator=evaluator, explain=explain,
                                        render=render, **options)
    now = at.astimezone(UTC)
    upcoming = next_runs(message.schedule, message.campaign, now, NEXT_RUNS) if message.schedule.kind == "recurring" \
        else ()
    return Run(strategy, why=why, next_runs=upcoming)


class Prepared:
    """One message made ready to decide single recipients, per recipient, as of one instant: what
    ``Herald.prepare`` returns, for a service that decides one recipient per request.

    ``prepared.decide(customer)`` is the decision ``Herald.evaluate(message, [customer], at=at,
    mode="per_recipient", …)`` gives (same options), without setting up a run, a pipeline and an evaluator
    for every request (about 100 µs against about 10 µs for the decision itself; benchmarks/README.md). Keep
    one per message version and instant: ``at`` is "now" for the schedule check and the run time, so an
    immediate message's ``time.*`` facts are those of ``at``; prepare again when "now" has moved on as far as
    the rules can tell (they see the local time to the minute). Incentives are reserved in ``ledger`` at each
    call, as one-recipient runs would.
    """

    def __init__(self, message: Message, registry: Registry, *, at: datetime, evaluator: str | Evaluator = "compiled",
                 explain: bool = False, render: bool = False, preview: bool = True,
                 history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, default_tz: str = "UTC",
                 ledger: LedgerStore | None = None):
        from engine.pipeline import Pipeline

        name = evaluator if isinstance(evaluator, str) else getattr(evaluator, "name", type(evaluator).__name__)
        choose_mode(PER_RECIPIENT, evaluator=name, evaluator_modes=evaluator_modes(registry, evaluator), size=1,
                    why_not_bulk=lambda: None)  # a bulk-only evaluator is refused, as evaluate refuses it
        self.message = message
        #: the instant the decisions are made as of
        self.at = at
        self.pipeline = Pipeline(message, registry, at=at, evaluator=evaluator, explain=explain, render=render,
                                 preview=preview, history=history, default_tz=default_tz, ledger=ledger)
        #: ``decide(customer) -> Decision``: the decision for one recipient, as a run of that one recipient
        #: would make it (first, when there is an incentive, the start of a one-recipient run: a fresh
        #: per-run scratch for the incentive type and its ``prepare`` check). Not thread-safe: one call at a time.
        self.decide: Callable[[Customer], Decision] = \
            self._checked if message.incentive is not None else self.pipeline.decide

    def _checked(self, customer: Customer) -> Decision:
        self.pipeline.prepare(1)
        return self.pipeline.decide(customer)


def evaluate(message: Message, customers: Any, *, at: datetime, registry: Registry, **options: Any) -> list[Decision]:
    """Every decision of :func:`start_run` (``Herald.evaluate`` for a registry), as a list in audience order.

    :param options: ``mode``, ``evaluator``, ``explain``, ``render``, ``preview``, ``history``, ``default_tz``,
        ``ledger``, as for ``Herald.evaluate``.
    """
    return list(start_run(registry, message, customers, at=at, **options))
