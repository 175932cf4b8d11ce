"""Per-recipient evaluation (PRODUCT.md §4): facts, then every registered optimizer in its order, then
incentive, rendering and the decision. Nothing here names a concrete channel, incentive or rule kind's
meaning: that is the plugins' business.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from engine.contracts import DecisionDraft, EvaluationContext, Evaluator, FiredRule, is_active
from engine.errors import EngineError, EvaluationError, MessageFileError, Problem
from engine.events import EngineEvent
from engine.facts import FactBuilder
from engine.model import Customer, Decision, Message
from engine.registry import Registry
from engine.rendering import render_for
from engine.scheduling import check_schedule, next_runs, run_time
from engine.stores import LedgerStore

#: how many upcoming runs of a recurring message a pipeline lists
NEXT_RUNS = 5

#: the exclusion reason of a recipient the incentive cannot serve (cap reached, codes used up, expired)
INCENTIVE_UNAVAILABLE = "incentive_unavailable"


@dataclass
class Summary:
    """Counts per channel, variant and exclusion reason, and the estimated cost of the included sends."""

    total: int = 0
    included: int = 0
    channels: Counter[str] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0

    def add(self, decision: Decision, costs: Mapping[str, float]) -> None:
        """Count one decision."""
        self.total += 1
        if decision.included:
            self.included += 1
            if decision.channel:
                self.channels[decision.channel] += 1
                self.cost += costs.get(decision.channel, 0.0)
            if decision.variant:
                self.variants[decision.variant] += 1
        else:
            self.excluded[decision.excluded_reason or "unknown"] += 1

    def withdraw(self, decision: Decision, reason: str, costs: Mapping[str, float]) -> None:
        """Recount an included ``decision`` (already counted) as excluded for ``reason``."""
        self.included -= 1
        if decision.channel:
            self.channels[decision.channel] -= 1
            self.cost -= costs.get(decision.channel, 0.0)
        if decision.variant:
            self.variants[decision.variant] -= 1
        self.excluded[reason] += 1
        self.channels, self.variants = +self.channels, +self.variants  # drop zero counts

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any], prior: Summary | None = None) -> Summary:
        """A Summary from :meth:`as_dict` counts (added to ``prior``, when given)."""
        out = prior or cls()
        out.total += counts["total"]
        out.included += counts["included"]
        out.channels.update(counts["channels"])
        out.variants.update(counts["variants"])
        out.excluded.update(counts["exclusion_reasons"])
        out.cost += counts["estimated_cost"]
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, counts sorted by name."""
        return {
            "total": self.total,
            "included": self.included,
            "excluded": self.total - self.included,
            "channels": dict(sorted(self.channels.items())),
            "variants": dict(sorted(self.variants.items())),
            "exclusion_reasons": dict(sorted(self.excluded.items())),
            "estimated_cost": round(self.cost, 4),
        }


class Pipeline:
    """Evaluates one message for any number of recipients, "now" being the instant ``at``.

    ``at`` only decides which sends are in the past (refused: :func:`engine.scheduling.check_schedule`) and
    which recurring run is next; ``time.*`` facts describe each recipient's planned send instant.
    """

    def __init__(
        self,
        message: Message,
        registry: Registry,
        *,
        at: datetime,
        evaluator: str | Evaluator = "compiled",
        explain: bool = False,
        render: bool = False,
        preview: bool = True,
        history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        default_tz: str = "UTC",
        ledger: LedgerStore | None = None,
    ):
        self.message = message
        self.registry = registry
        # bulk (columnar) evaluation is picked for large audiences unless an evaluator was asked for by name
        self.bulk_threshold: int | None = None
        if evaluator in ("compiled", "columnar"):
            from engine.columnar.plan import threshold

            self.bulk_threshold = 0 if evaluator == "columnar" else threshold()
            evaluator = "compiled"
        self.preview = preview
        self.default_tz = default_tz
        self.evaluator = registry.evaluator(evaluator) if isinstance(evaluator, str) else evaluator
        self.explain = explain
        self.render = render
        check_schedule(message, at)  # a campaign that ended or a send in the past is refused here
        now = at.astimezone(UTC)
        self.facts = FactBuilder(now, message.facts, default_tz, send_at=run_time(message.schedule, now, message.campaign),
                                 local_time=message.schedule.local_time)
        #: the run time: the schedule's instant, the next recurring occurrence at or after ``at``, or ``at``
        self.base_send_at = self.facts.send_at
        #: a recurring message's next runs at or after ``at`` (the first is the one evaluated); else empty
        self.next_runs = tuple(next_runs(message.schedule, message.campaign, now, NEXT_RUNS)
                               if message.schedule.kind == "recurring" else ())
        self.rules_versions = MappingProxyType({rs.name: rs.version for rs in message.rulesets.values()})
        self._fired_rules = {kind: {r.id: FiredRule(r.id, r.then) for r in rs.rules}
                             for kind, rs in message.rulesets.items()}
        self.costs = {name: reg.obj.cost for name, reg in registry.channels.items()}
        self.ctx = EvaluationContext(message, registry, self.facts.at, self._run_rules, preview,
                                     history or MappingProxyType({}), ledger=ledger or registry.ledger)
        self.summary = Summary()
        #: the optimizers that do something for this message (``active(message)``, when they say)
        self.steps = tuple(o for o in registry.pipeline if is_active(o, message))

    def _run_rules(self, kind: str, draft: DecisionDraft) -> Sequence[FiredRule]:
        ruleset = self.message.rulesets.get(kind)
        if ruleset is None:
            return ()
        try:
            fired = self.evaluator.fired(ruleset, draft.facts)
        except EvaluationError:
            raise
        except Exception as exc:  # an evaluator bug must name the ruleset, not vanish
            raise EvaluationError(f"evaluating {ruleset.key} failed: {exc}", ruleset=ruleset.name) from exc
        draft.fired[ruleset.name] = fired
        if draft.explain:
            draft.note(kind, "rules_fired", ruleset=ruleset.name, version=ruleset.version, fired=list(fired))
        if draft.observer is not None:
            for rule in fired:
                draft.observer(EngineEvent("rule_fired", draft.customer.id, {
                    "kind": kind, "ruleset": ruleset.name, "version": ruleset.version, "rule": rule}))
        rules = self._fired_rules[kind]
        return [rules[rid] for rid in fired]

    def decide(self, customer: Customer) -> Decision:
        """The decision for one recipient."""
        facts = self.facts.facts(customer)  # time.* at the planned send instant (see FactBuilder)
        if self.registry.has_enrichers:
            self._enrich(customer, facts)
        send_at = self.facts.send_time(customer)
        draft = DecisionDraft(customer, facts, send_at, self.explain)
        if self.registry.has_observers:
            draft.observer = self.registry.emit
        ctx = self.ctx
        for optimizer in self.steps:
            optimizer.apply(draft, ctx)
            if not draft.included:
                break
        if draft.included:
            self._finish(draft)
        if draft.included:
            channels = draft.channels
            decision = Decision(customer.id, True, None, draft.variant, channels[0], tuple(channels[1:]),
                                draft.incentive, draft.rendered, draft.send_at, self.rules_versions, draft.fired,
                                tuple(draft.trace))
        else:
            decision = Decision(customer.id, False, draft.excluded_reason, None, None, (), draft.incentive,
                                draft.rendered, None, self.rules_versions, draft.fired, tuple(draft.trace))
        self.summary.add(decision, self.costs)
        if self.registry.has_observers:
            self.registry.emit(EngineEvent("decision_made", customer.id, {"decision": decision}))
        return decision

    def run(self, customers: Iterable[Customer], *, size: int | None = None) -> Iterator[Decision]:
        """Decisions in the order of ``customers``.

        A list above the bulk threshold (``HERALD_COLUMNAR_THRESHOLD``) is decided by the columnar plan
        when every step supports it (:func:`engine.columnar.unsupported`); the decisions are the same.
        ``size`` is the number of customers when ``customers`` cannot tell (an iterator), for
        :meth:`prepare`.
        """
        self.prepare(len(customers) if size is None and isinstance(customers, Sized) else size)
        if self.bulk_ok(customers):
            bulk = self._run_bulk(customers)  # type: ignore[arg-type]
            if bulk is not None:
                yield from bulk
                return
        for customer in customers:
            yield self.decide(customer)

    def bulk_ok(self, customers: Iterable[Customer]) -> bool:
        """Whether ``customers`` would be decided by the columnar plan."""
        if self.bulk_threshold is None or not isinstance(customers, Sequence) or len(customers) <= self.bulk_threshold:
            return False
        from engine.columnar.plan import unsupported

        return unsupported(self.message, self.registry, explain=self.explain, render=self.render,
                           preview=self.preview, slow_reach=False) is None

    def _run_bulk(self, customers: Sequence[Customer]) -> Iterator[Decision] | None:
        from engine.columnar import evaluate_frame, frame_from_customers, iter_decisions, summary_counts

        try:
            frame = frame_from_customers(customers)
        except (ValueError, TypeError):
            return None  # attributes of mixed types: stay per recipient
        out = evaluate_frame(frame, self.message, self.registry, self.facts.at, default_tz=self.default_tz,
                             slow_reach=False)
        self.summary = Summary.from_counts(summary_counts(out, self.costs), self.summary)
        reserve = None
        if self.message.incentive is not None:

            def reserve(i: int, send_at: datetime) -> Mapping[str, Any]:
                return self.reserve_incentive(customers[i], send_at)

        return iter_decisions(out, self.message, base_send_at=self.base_send_at, reserve=reserve,
                              unavailable=self.incentive_unavailable)

    def prepare(self, audience: int | None) -> None:
        """Before a run of ``audience`` recipients (``None``: unknown): the incentive type's ``prepare``
        check (e.g. a coupon series with too few codes); ``MessageFileError`` names the setting."""
        spec = self.message.incentive
        check = getattr(self.registry.incentive(spec.kind), "prepare", None) if spec is not None else None
        if check is None:
            return
        errors = [i for i in check(spec.settings, self.ctx, audience) if i.is_error]
        if errors:
            where = self.message.source or f"message {self.message.id}"
            raise MessageFileError([Problem(i.message, i.code, self.message.source, path=f"incentive.settings.{i.path}")
                                    for i in errors], f"{where}: the incentive cannot serve this run")

    def reserve_incentive(self, customer: Customer, send_at: datetime) -> Mapping[str, Any]:
        """The message's incentive for ``customer``, sent at ``send_at`` (passed on in the customer's zone, so
        that dates counted from the send are the recipient's dates). ``EngineError`` when none is left."""
        spec = self.message.incentive
        assert spec is not None
        local = send_at.astimezone(self.facts.zone_of(customer))
        grant = self.registry.incentive(spec.kind).reserve(spec.settings, customer, self.ctx, local)
        if self.registry.has_observers and not self.ctx.preview:
            self.registry.emit(EngineEvent("incentive_reserved", customer.id, {"kind": spec.kind, "grant": grant}))
        return grant

    def incentive_unavailable(self, decision: Decision, error: EngineError) -> None:
        """Bulk path: an included decision lost its incentive; recount it as excluded."""
        self.summary.withdraw(decision, INCENTIVE_UNAVAILABLE, self.costs)

    def _finish(self, draft: DecisionDraft) -> None:
        if draft.variant is None:
            draft.variant = "default"
        if not draft.channels:
            draft.exclude("no_reachable_channel", "channels")
            return
        spec = self.message.incentive
        if spec is not None:
            try:
                draft.incentive = self.reserve_incentive(draft.customer, draft.send_at or self.base_send_at)
            except EngineError as exc:  # a coupon series that ran out, or expired: this recipient goes without
                draft.exclude(INCENTIVE_UNAVAILABLE, "incentive", kind=spec.kind, error=str(exc))
                return
            draft.note("incentive", "reserved" if not self.ctx.preview else "previewed", kind=spec.kind)
        if self.render:
            self._render(draft)

    def _render(self, draft: DecisionDraft) -> None:
        """Render the first channel whose payload renders and passes its compliance check; a channel that
        fails is dropped (``template_error`` or ``compliance``) and the next one is tried."""
        failures = []
        for name in list(draft.channels):
            out = render_for(self.message, draft, name, self.registry, preview=self.preview)
            if out.failure == "template_error":
                draft.drop_channel(name, "render", "template_error", error=out.error)
                failures.append("render_failed")
                continue
            if out.failure == "compliance":
                draft.drop_channel(name, "render", "compliance", problems=[
                    {"path": i.path, "code": i.code, "message": i.message} for i in out.problems])
                failures.append("compliance")
                continue
            draft.rendered = MappingProxyType({"channel": name, "payload": out.payload})
            return
        draft.exclude("compliance" if failures and set(failures) == {"compliance"} else "render_failed", "render")

    def _enrich(self, customer: Customer, facts: dict[str, Any]) -> None:
        for extra in self.registry.hook.enrich_facts(customer=customer, message=self.message):
            for key, value in (extra or {}).items():
                if key in facts:
                    raise EvaluationError(f"enrich_facts returned {key!r}, which is already a fact")
                facts[key] = value


def evaluate(
    message: Message,
    customers: Iterable[Customer],
    *,
    at: datetime,
    registry: Registry,
    evaluator: str | Evaluator = "compiled",
    explain: bool = False,
    render: bool = False,
    preview: bool = True,
    history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[Decision]:
    """Decisions for every customer, in order. Deterministic for the same inputs.

    :param at: "now" (time zone required): a send before it is an error, a recurring message runs its next
        occurrence at or after it. ``time.*`` facts describe each recipient's planned send instant.
    :param evaluator: ``compiled`` (default), ``reference`` or ``durable``, or an Evaluator object.
    :param explain: record a step-by-step trace in every decision.
    :param render: render the chosen channel's creative for each included recipient.
    :param preview: reserve nothing (coupons are previewed, not taken).
    """
    pipeline = Pipeline(message, registry, at=at, evaluator=evaluator, explain=explain, render=render,
                        preview=preview, history=history)
    return list(pipeline.run(customers))
