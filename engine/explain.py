"""Why one recipient got its decision (``herald explain``).

For one customer this runs the real pipeline with a trace and then explains, with the reference semantics
of :mod:`engine.evaluators.reference`: every rule of every ruleset of the message, each condition with the
fact value seen, the operator, the operand and the outcome (so the rule that nearly fired shows which
comparison stopped it); the channels tried and why each was dropped; and the send-time computation, every
instant in the recipient's zone and in UTC.

The facts explained are the ones the evaluator was handed during the decision. A ruleset the decision never
reached (the recipient was excluded earlier) is explained on the same facts and marked ``reached: false``.
If the chosen evaluator fired other rules than the reference semantics on the same facts, that is an
evaluator bug and :class:`~engine.errors.EvaluationError` is raised rather than a wrong explanation shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.contracts import Evaluator
from engine.errors import EvaluationError
from engine.evaluators.reference import ReferenceEvaluator, holds
from engine.facts import default_zone, zone
from engine.model import Customer, Decision, Message, TraceStep
from engine.pipeline import Pipeline
from engine.registry import Registry
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Condition, Not, Rule, Ruleset
from engine.stores import LedgerStore


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """One node of a rule's condition with its outcome for the recipient.

    ``kind`` is ``cmp``, ``all``, ``any``, ``not`` or ``always``. A comparison carries the ``field``, the
    ``op``, the ``operand`` and the fact value ``seen`` (``missing`` true when the fact is absent or null).
    """

    kind: str
    outcome: bool
    field: str | None = None
    op: str | None = None
    operand: Any = None
    seen: Any = None
    missing: bool = False
    items: tuple[ConditionResult, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        out: dict[str, Any] = {"kind": self.kind, "outcome": self.outcome}
        if self.kind == "cmp":
            out.update(field=self.field, op=self.op, operand=_plain(self.operand), seen=_plain(self.seen),
                       missing=self.missing)
        if self.items:
            out["items"] = [i.as_dict() for i in self.items]
        return out


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule for the recipient: ``status`` is ``fired``, ``matched`` (true, but an earlier rule won under
    hit policy ``first``) or ``no_match``; ``blocking`` lists the conditions that made it false."""

    id: str
    priority: int
    status: str
    then: Mapping[str, Any]
    condition: ConditionResult
    blocking: tuple[ConditionResult, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"id": self.id, "priority": self.priority, "status": self.status, "then": _plain(self.then),
                "condition": self.condition.as_dict(), "blocking": [b.as_dict() for b in self.blocking]}


@dataclass(frozen=True, slots=True)
class RulesetResult:
    """One ruleset of the message for the recipient. ``reached`` is false when the decision ended before
    this ruleset ran; ``nearest`` is the non-matching rule, ahead of the first fired one, that fewest
    conditions kept from matching."""

    kind: str
    name: str
    version: str
    hit_policy: str
    source: str | None
    reached: bool
    fired: tuple[str, ...]
    rules: tuple[RuleResult, ...]
    nearest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"kind": self.kind, "name": self.name, "version": self.version, "hit_policy": self.hit_policy,
                "source": self.source, "reached": self.reached, "fired": list(self.fired),
                "nearest": self.nearest, "rules": [r.as_dict() for r in self.rules]}


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """A channel that was a candidate: ``outcome`` is ``chosen``, ``fallback`` or ``dropped`` (with the
    step that dropped it, ``why`` and the trace details)."""

    channel: str
    outcome: str
    step: str | None = None
    why: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"channel": self.channel, "outcome": self.outcome, "step": self.step, "why": self.why,
                "detail": _plain(self.detail)}


@dataclass(frozen=True)
class Explanation:
    """Everything ``herald explain`` shows for one recipient. Instants are given in ``zone`` and in UTC."""

    customer: Customer
    zone: str
    at: datetime
    decision: Decision
    rulesets: tuple[RulesetResult, ...]
    channels: tuple[ChannelResult, ...]
    send_time: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (instants as ``{"local": …, "utc": …}``)."""
        decision = self.decision.as_dict()
        decision["send_at"] = self.instant(self.decision.send_at)
        return {
            "customer": self.customer.id,
            "zone": self.zone,
            "at": self.instant(self.at),
            "decision": decision,
            "rulesets": [r.as_dict() for r in self.rulesets],
            "channels": [c.as_dict() for c in self.channels],
            "send_time": _plain(self.send_time),
        }

    def instant(self, when: datetime | None) -> dict[str, str] | None:
        """``when`` in the recipient's zone and in UTC."""
        return both(when, ZoneInfo(self.zone)) if when is not None else None


def both(when: datetime, tz: ZoneInfo) -> dict[str, str]:
    """An instant as ISO 8601 in ``tz`` and in UTC."""
    return {"local": when.astimezone(tz).isoformat(), "utc": when.astimezone(UTC).isoformat()}


def explain_condition(cond: Condition, facts: Mapping[str, Any]) -> ConditionResult:
    """The condition tree with every node's outcome for ``facts`` (outcomes from the reference ``holds``)."""
    outcome = holds(cond, facts)
    if isinstance(cond, Cmp):
        seen = facts.get(cond.field)
        return ConditionResult("cmp", outcome, cond.field, cond.op, cond.value, seen, seen is None)
    if isinstance(cond, All):
        return ConditionResult("all", outcome, items=tuple(explain_condition(c, facts) for c in cond.items))
    if isinstance(cond, AnyOf):
        return ConditionResult("any", outcome, items=tuple(explain_condition(c, facts) for c in cond.items))
    if isinstance(cond, Not):
        return ConditionResult("not", outcome, items=(explain_condition(cond.item, facts),))
    if isinstance(cond, Always):
        return ConditionResult("always", outcome)
    raise TypeError(f"unknown condition node {cond!r}")


def blocking(node: ConditionResult) -> tuple[ConditionResult, ...]:
    """The smallest parts of a false condition that made it false (none when it is true): the false
    comparisons under ``all``, every comparison under a false ``any``, and a ``not`` whose inner part held."""
    if node.outcome:
        return ()
    if node.kind == "all":
        return tuple(b for item in node.items if not item.outcome for b in blocking(item))
    if node.kind == "any":
        return tuple(b for item in node.items for b in blocking(item))
    return (node,)


def explain_ruleset(kind: str, ruleset: Ruleset, facts: Mapping[str, Any], fired: Sequence[str] | None
                    ) -> RulesetResult:
    """Every rule of ``ruleset`` for ``facts``. ``fired`` is what the decision's evaluator fired (``None``:
    the decision never reached this ruleset; the reference semantics are shown)."""
    expected = ReferenceEvaluator().fired(ruleset, facts)
    if fired is not None and tuple(fired) != expected:
        raise EvaluationError(f"{ruleset.key}: the evaluator fired {list(fired)} but the rule semantics fire "
                              f"{list(expected)} for these facts; this is an evaluator bug, please report it",
                              ruleset=ruleset.name)
    rules = tuple(_rule_result(rule, facts, expected) for rule in ruleset.rules)
    return RulesetResult(kind, ruleset.name, ruleset.version, ruleset.hit_policy, ruleset.source, fired is not None,
                         expected, rules, _nearest(rules))


def _rule_result(rule: Rule, facts: Mapping[str, Any], fired: Sequence[str]) -> RuleResult:
    cond = explain_condition(rule.when, facts)
    status = "fired" if rule.id in fired else "matched" if cond.outcome else "no_match"
    return RuleResult(rule.id, rule.priority, status, rule.then, cond, blocking(cond))


def _nearest(rules: Sequence[RuleResult]) -> str | None:
    ahead: list[RuleResult] = []
    for r in rules:
        if r.status == "fired":
            break
        if r.status == "no_match":
            ahead.append(r)
    if not ahead:
        return None
    return min(ahead, key=lambda r: len(r.blocking)).id  # min keeps the first (highest priority) of ties


def explain_channels(decision: Decision) -> tuple[ChannelResult, ...]:
    """The candidate channels in the order they were tried, from the decision's trace."""
    order: list[str] = []
    dropped: dict[str, TraceStep] = {}
    for step in decision.trace:
        if step.event == "candidates":
            order += [c for c in step.detail.get("channels", ()) if c not in order]
        elif step.event == "channel_dropped":
            name = str(step.detail.get("channel"))
            if name not in order:
                order.append(name)
            dropped[name] = step
    out = []
    for name in order:
        step = dropped.get(name)
        if name == decision.channel:
            out.append(ChannelResult(name, "chosen"))
        elif name in decision.fallbacks:
            out.append(ChannelResult(name, "fallback"))
        elif step is not None:
            detail = {k: v for k, v in step.detail.items() if k not in ("channel", "why")}
            out.append(ChannelResult(name, "dropped", step.step, str(step.detail.get("why")), detail))
        else:  # a candidate left behind when the recipient was excluded afterwards
            out.append(ChannelResult(name, "dropped", None, decision.excluded_reason))
    return tuple(out)


def explain_send_time(message: Message, decision: Decision, pipeline: Pipeline, tz: ZoneInfo) -> dict[str, Any]:
    """The send-time computation: the schedule, the run time, the local send time, every quiet-hours
    deferral and the final send instant (each instant local and UTC)."""
    s = message.schedule
    deferrals = [step for step in decision.trace if step.event == "deferred"]
    planned = datetime.fromisoformat(deferrals[0].detail["was"]) if deferrals else decision.send_at
    out: dict[str, Any] = {
        "schedule": s.kind,
        "rrule": s.rrule,
        "local_time": s.local_time,
        "quiet_hours": list(s.quiet_hours) if s.quiet_hours else None,
        "now": both(pipeline.facts.at, tz),
        "run_time": both(pipeline.base_send_at, tz) if pipeline.base_send_at else None,
        "local_send_time": both(planned, tz) if (s.local_time and planned) else None,
        "deferrals": [{"step": d.step, "window": d.detail.get("window"),
                       "was": both(datetime.fromisoformat(d.detail["was"]), tz),
                       "to": both(datetime.fromisoformat(d.detail["to"]), tz)} for d in deferrals],
        "send_at": both(decision.send_at, tz) if decision.send_at else None,
    }
    if not decision.included:
        out["note"] = f"no send: excluded ({decision.excluded_reason})"
    return out


class _Recorder:
    """An evaluator that passes through to another and keeps the facts each ruleset was evaluated on."""

    def __init__(self, inner: Evaluator):
        self.inner = inner
        self.name = inner.name
        self.facts: dict[str, dict[str, Any]] = {}

    def fired(self, ruleset: Any, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """The inner evaluator's answer; the facts are kept by ruleset name."""
        self.facts[ruleset.name] = dict(facts)
        return self.inner.fired(ruleset, facts)


def explain(message: Message, registry: Registry, customer: Customer, *, at: datetime,
            evaluator: str | Evaluator = "compiled", render: bool = False, default_tz: str = "UTC",
            before: Iterable[Customer] = (), audience_size: int | None = None,
            ledger: LedgerStore | None = None) -> Explanation:
    """Decide for ``customer`` as ``herald evaluate`` would (with a trace) and explain every step.

    :param at: the evaluation instant ("now"), with a time zone.
    :param evaluator: the evaluator the decision uses; the explanation uses the reference semantics and
        raises ``EvaluationError`` if the two disagree.
    :param before: the customers ahead of ``customer`` in the audience, in order. A message with an
        incentive decides them first (in the same run, not explained), so that a capped or limited incentive
        is counted as a real run counts it: a recipient beyond the cap is ``incentive_unavailable`` here too.
    :param audience_size: the number of recipients of the whole run, for the incentive's ``prepare`` check
        (default: those ahead and this one).
    :param ledger: where the incentive's reservations are looked up (and, for a preview, counted against), as
        for ``Herald.evaluate`` (default: the registry's ledger).
    """
    recorder = _Recorder(registry.evaluator(evaluator) if isinstance(evaluator, str) else evaluator)
    pipeline = Pipeline(message, registry, at=at, evaluator=recorder, explain=False, render=render,
                        default_tz=default_tz, ledger=ledger)
    if message.incentive is not None:
        ahead = list(before)
        pipeline.prepare(audience_size if audience_size is not None else len(ahead) + 1)
        for other in ahead:
            pipeline.decide(other)
        recorder.facts.clear()
    pipeline.explain = True
    decision = pipeline.decide(customer)
    fallback_facts: dict[str, Any] | None = next(iter(recorder.facts.values()), None)
    if fallback_facts is None:  # no ruleset ran (excluded first): the facts the pipeline builds
        fallback_facts = pipeline.facts.facts(customer)
    rulesets = tuple(
        explain_ruleset(kind, rs, recorder.facts.get(rs.name, fallback_facts), decision.fired.get(rs.name))
        for kind, rs in message.rulesets.items())
    tz = zone(customer.timezone) or default_zone(default_tz)
    return Explanation(customer, str(tz), pipeline.facts.at, decision, rulesets, explain_channels(decision),
                       explain_send_time(message, decision, pipeline, tz))


def _plain(value: Any) -> Any:
    """Tuples → lists, mappings → dicts, recursively (JSON-ready)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value
