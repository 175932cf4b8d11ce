"""What both execution modes share around the optimizers: the run's facts and context, and the finish step
(variant ``default``, ``no_reachable_channel``, the incentive reservation, rendering).

The per-recipient mode finishes one draft at a time (:meth:`Finish.draft`); the bulk mode's plan sets the
default variant and ``no_reachable_channel`` with the same constants, then :meth:`Finish.frame` reserves the
incentives of a decision frame's included rows, in row order, exactly as the per-recipient mode would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.contracts import DecisionDraft, EvaluationContext, FiredRule
from engine.errors import EngineError, EvaluationError, MessageFileError, Problem
from engine.events import EngineEvent
from engine.facts import FactBuilder
from engine.model import Customer, Message
from engine.registry import Registry
from engine.rendering import render_for
from engine.scheduling import check_schedule, run_time
from engine.stores import LedgerStore

if TYPE_CHECKING:
    import polars as pl

#: the variant of an included recipient no personalization rule chose
DEFAULT_VARIANT = "default"
#: the exclusion reason of a recipient left with no channel
NO_REACHABLE_CHANNEL = "no_reachable_channel"
#: the exclusion reason of a recipient the incentive cannot serve (cap reached, codes used up, expired)
INCENTIVE_UNAVAILABLE = "incentive_unavailable"

RunRules = Callable[[str, DecisionDraft], Sequence[FiredRule]]


def _no_rules(kind: str, draft: DecisionDraft) -> Sequence[FiredRule]:
    raise EvaluationError("rules run inside the bulk plan here, not per recipient", ruleset=kind)


def run_context(message: Message, registry: Registry, *, at: datetime, run_rules: RunRules | None = None,
                preview: bool = True, history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                ledger: LedgerStore | None = None, default_tz: str = "UTC") -> tuple[FactBuilder, EvaluationContext]:
    """The facts builder and evaluation context of one run; refuses a send in the past or a campaign that
    ended (:func:`engine.scheduling.check_schedule`)."""
    check_schedule(message, at)
    now = at.astimezone(UTC)
    facts = FactBuilder(now, message.facts, default_tz, send_at=run_time(message.schedule, now, message.campaign),
                        local_time=message.schedule.local_time)
    ctx = EvaluationContext(message, registry, facts.at, run_rules or _no_rules, preview,
                            history or MappingProxyType({}), ledger=ledger or registry.ledger)
    return facts, ctx


class Finish:
    """The finish step of a run: incentive check before it, reservation and rendering for each recipient."""

    def __init__(self, message: Message, registry: Registry, facts: FactBuilder, ctx: EvaluationContext, *,
                 render: bool = False):
        self.message = message
        self.registry = registry
        self.facts = facts
        self.ctx = ctx
        self.render = render
        #: the run time: the schedule's instant, the next recurring occurrence at or after "now", or "now"
        self.base_send_at = facts.send_at

    def prepare(self, audience: int | None) -> None:
        """Before a run of ``audience`` recipients (``None``: unknown): a fresh per-run scratch for the
        incentive type (``ctx.state[kind]``, e.g. a coupon preview's tally of codes taken, is dropped, so a
        context kept for several runs, as ``engine.run.Prepared`` keeps it, counts each run alone), then its
        ``prepare`` check (e.g. a coupon series with too few codes); ``MessageFileError`` names the setting."""
        spec = self.message.incentive
        if spec is not None:
            self.ctx.state.pop(spec.kind, None)
        check = getattr(self.registry.incentive(spec.kind), "prepare", None) if spec is not None else None
        if spec is None or check is None:
            return
        errors = [i for i in check(spec.settings, self.ctx, audience) if i.is_error]
        if errors:
            where = self.message.source or f"message {self.message.id}"
            raise MessageFileError([Problem(i.message, i.code, self.message.source, path=f"incentive.settings.{i.path}")
                                    for i in errors], f"{where}: the incentive cannot serve this run")

    def reserve(self, customer: Customer, send_at: datetime) -> Mapping[str, Any]:
        """The message's incentive for ``customer``, sent at ``send_at`` (passed on in the customer's zone, so
        that dates counted from the send are the recipient's dates). ``EngineError`` when none is left."""
        spec = self.message.incentive
        assert spec is not None
        local = send_at.astimezone(self.facts.zone_of(customer))
        grant = self.registry.incentive(spec.kind).reserve(spec.settings, customer, self.ctx, local)
        if self.registry.has_observers and not self.ctx.preview:
            self.registry.emit(EngineEvent("incentive_reserved", customer.id, {"kind": spec.kind, "grant": grant}))
        return grant

    def draft(self, draft: DecisionDraft) -> None:
        """Finish an included draft: the default variant, ``no_reachable_channel``, the incentive (a recipient
        it cannot serve is excluded, ``incentive_unavailable``) and, when asked, rendering."""
        if draft.variant is None:
            draft.variant = DEFAULT_VARIANT
        if not draft.channels:
            draft.exclude(NO_REACHABLE_CHANNEL, "channels")
            return
        spec = self.message.incentive
        if spec is not None:
            try:
                draft.incentive = self.reserve(draft.customer, draft.send_at or self.base_send_at)
            except EngineError as exc:  # a coupon series that ran out, or expired: this recipient goes without
                draft.exclude(INCENTIVE_UNAVAILABLE, "incentive", kind=spec.kind, error=str(exc))
                return
            draft.note("incentive", "reserved" if not self.ctx.preview else "previewed", kind=spec.kind)
        if self.render:
            self._render(draft)

    def frame(self, out: pl.DataFrame, customers: Callable[[list[int]], Sequence[Customer]]
              ) -> tuple[pl.DataFrame, list[Mapping[str, Any] | None] | None]:
        """A decision frame's incentives: each included row's grant, reserved in row order (``customers(rows)``
        gives the Customer of each of those row indices); a row the incentive cannot serve becomes excluded
        (``incentive_unavailable``). Returns the frame and the grants by row (``None`` when the message has
        no incentive)."""
        if self.message.incentive is None:
            return out, None
        import polars as pl

        grants: list[Mapping[str, Any] | None] = [None] * out.height
        refused = [False] * out.height
        rows = out.select(pl.arg_where(pl.col("included"))).to_series().to_list()
        send_at = out.get_column("send_at").gather(rows).to_list()
        for i, customer, sent in zip(rows, customers(rows), send_at, strict=True):
            if sent == self.base_send_at:
                sent = self.base_send_at  # the same datetime object (and offset) as the per-recipient mode
            try:
                grants[i] = self.reserve(customer, sent)
            except EngineError:
                refused[i] = True
        if any(refused):
            gone = pl.Series(refused, dtype=pl.Boolean)
            keep = pl.lit(gone).not_()
            out = out.with_columns(
                (pl.col("included") & keep).alias("included"),
                pl.when(keep).then(pl.col("excluded_reason")).otherwise(pl.lit(INCENTIVE_UNAVAILABLE))
                .alias("excluded_reason"),
                *(pl.when(keep).then(pl.col(c)).alias(c) for c in ("variant", "channel", "send_at")),
                pl.when(keep).then(pl.col("fallbacks")).otherwise(pl.lit([], pl.List(pl.String))).alias("fallbacks"),
            )
        return out, grants

    def _render(self, draft: DecisionDraft) -> None:
        """Render the first channel whose payload renders and passes its compliance check; a channel that
        fails is dropped (``template_error`` or ``compliance``) and the next one is tried."""
        failures = []
        for name in list(draft.channels):
            out = render_for(self.message, draft, name, self.registry, preview=self.ctx.preview)
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
