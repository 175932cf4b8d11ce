"""Per-recipient evaluation (PRODUCT.md §4): facts, then every registered optimizer in its order, then the
finish step (:mod:`engine.finish`: incentive, rendering) and the decision. The per-recipient execution mode
(:class:`engine.run.PerRecipientStrategy`) runs it; callers go through ``Herald.evaluate``. Nothing here names a concrete channel, incentive or rule kind's
meaning: that is the plugins' business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from datetime import datetime
from types import MappingProxyType
from typing import Any

from engine.contracts import DecisionDraft, Evaluator, FiredRule, is_active
from engine.errors import EvaluationError
from engine.events import EngineEvent
from engine.finish import Finish, run_context
from engine.model import Customer, Decision, Message
from engine.registry import Registry
from engine.rulefiles.ir import Ruleset
from engine.stores import LedgerStore

#: the most distinct fired-rule combinations a pipeline keeps per ruleset (a collect ruleset has many)
_SEEN_MAX = 4096


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
        self.evaluator = registry.evaluator(evaluator) if isinstance(evaluator, str) else evaluator
        self.explain = explain
        # a campaign that ended or a send in the past is refused here
        self.facts, self.ctx = run_context(message, registry, at=at, run_rules=self._run_rules, preview=preview,
                                           history=history, ledger=ledger, default_tz=default_tz)
        self.finish = Finish(message, registry, self.facts, self.ctx, render=render)
        #: the run time: the schedule's instant, the next recurring occurrence at or after ``at``, or ``at``
        self.base_send_at = self.facts.send_at
        self.rules_versions = MappingProxyType({rs.name: rs.version for rs in message.rulesets.values()})
        #: rule kind -> (ruleset, its evaluation with the ruleset bound, rule id -> FiredRule, fired ids ->
        #: FiredRules seen so far), built once
        self._rulesets = {kind: (rs, self._bind(rs), {r.id: FiredRule(r.id, r.then) for r in rs.rules}, {})
                          for kind, rs in message.rulesets.items()}
        #: the optimizers that do something for this message (``active(message)``, when they say)
        self.steps = tuple(o for o in registry.pipeline if is_active(o, message))
        # the registry's hooks are fixed once it is built: read the flags once, not per recipient
        self._enrich_on = registry.has_enrichers
        self._observer = registry.emit if registry.has_observers else None

    def _bind(self, ruleset: Ruleset) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
        """``facts -> fired ids`` for one ruleset: the evaluator's ``bind`` when it has one, else ``fired``."""
        bind = getattr(self.evaluator, "bind", None)
        if bind is not None:
            return bind(ruleset)
        fired = self.evaluator.fired
        return lambda facts: fired(ruleset, facts)

    def _run_rules(self, kind: str, draft: DecisionDraft) -> Sequence[FiredRule]:
        prepared = self._rulesets.get(kind)
        if prepared is None:
            return ()
        ruleset, evaluate, rules, seen = prepared
        try:
            fired = evaluate(draft.facts)
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
        try:
            found = seen.get(fired)  # a first-hit ruleset fires one of few combinations: look them up
        except TypeError:  # an evaluator answering with a list
            return tuple(rules[rid] for rid in fired)
        if found is None:
            found = tuple(rules[rid] for rid in fired)
            if len(seen) < _SEEN_MAX:
                seen[fired] = found
        return found

    def decide(self, customer: Customer) -> Decision:
        """The decision for one recipient."""
        facts, send_at = self.facts.facts_and_send_time(customer)  # time.* at the planned send instant
        if self._enrich_on:
            self._enrich(customer, facts)
        draft = DecisionDraft(customer, facts, send_at, self.explain)
        observer = draft.observer = self._observer
        ctx = self.ctx
        for optimizer in self.steps:
            optimizer.apply(draft, ctx)
            if not draft.included:
                break
        if draft.included:
            self.finish.draft(draft)
        if draft.included:
            channels = draft.channels
            decision = Decision(customer.id, True, None, draft.variant, channels[0], tuple(channels[1:]),
                                draft.incentive, draft.rendered, draft.send_at, self.rules_versions, draft.fired,
                                tuple(draft.trace), draft.vars)
        else:
            decision = Decision(customer.id, False, draft.excluded_reason, None, None, (), draft.incentive,
                                draft.rendered, None, self.rules_versions, draft.fired, tuple(draft.trace))
        if observer is not None:
            observer(EngineEvent("decision_made", customer.id, {"decision": decision}))
        return decision

    def run(self, customers: Iterable[Customer], *, size: int | None = None) -> Iterator[Decision]:
        """Decisions in the order of ``customers``, one recipient at a time, after :meth:`prepare`
        (``size``: the number of customers when ``customers`` cannot tell, e.g. an iterator)."""
        self.prepare(len(customers) if size is None and isinstance(customers, Sized) else size)
        for customer in customers:
            yield self.decide(customer)

    def prepare(self, audience: int | None) -> None:
        """Before a run of ``audience`` recipients (``None``: unknown): see :meth:`engine.finish.Finish.prepare`."""
        self.finish.prepare(audience)

    def _enrich(self, customer: Customer, facts: dict[str, Any]) -> None:
        for extra in self.registry.hook.enrich_facts(customer=customer, message=self.message):
            for key, value in (extra or {}).items():
                if key in facts:
                    raise EvaluationError(f"enrich_facts returned {key!r}, which is already a fact")
                facts[key] = value

