"""Membership and eligibility: the audience_filter ruleset, blocked customers, eligibility rules.

Owns two rule kinds. ``audience_filter``: a rule's ``then`` is ``{include: bool}`` (default true); the
outcome ``include`` is the first fired rule's, false when none fired. ``eligibility``: a rule's ``then`` is
``{exclude: reason_code}``; the outcome ``exclude`` is the first fired rule's reason (``None``: none fired).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from engine import DecisionDraft, EvaluationContext, Message, RuleKind, hookimpl

if TYPE_CHECKING:
    import polars as pl

    from engine import ColumnarContext

AUDIENCE_FILTER = "audience_filter"
ELIGIBILITY = "eligibility"


class AudienceFilterThen(BaseModel):
    """Whether a matching customer is in the audience group."""

    model_config = ConfigDict(extra="forbid")

    include: bool = True


class EligibilityThen(BaseModel):
    """Excludes a matching customer, with a reason code that appears in decisions and summaries."""

    model_config = ConfigDict(extra="forbid")

    exclude: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


def audience_outcome(thens: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``include``: the first fired rule's (``False`` when none fired)."""
    return {"include": bool(thens[0].get("include", True)) if thens else False}


def eligibility_outcome(thens: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``exclude``: the first fired rule's reason (``None`` when none fired)."""
    return {"exclude": thens[0]["exclude"] if thens else None}


RULE_KINDS = (
    RuleKind(AUDIENCE_FILTER, AudienceFilterThen, audience_outcome, order=10,
             description="selects the audience (first fired rule's include; none fired: not in the audience)"),
    RuleKind(ELIGIBILITY, EligibilityThen, eligibility_outcome, order=30,
             description="excludes with the first fired rule's reason code"),
)


class Audience:
    """Step 1a: a message with an ``audience_filter`` ruleset includes only customers it selects."""

    name = "audience"
    order = 10

    def active(self, message: Message) -> bool:
        """Only a message with an ``audience_filter`` ruleset has an audience step."""
        return AUDIENCE_FILTER in message.rulesets

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Exclude with ``not_in_audience`` unless the filter includes the customer."""
        if AUDIENCE_FILTER not in ctx.message.rulesets:
            return
        fired = ctx.run_rules(AUDIENCE_FILTER, draft)
        if not audience_outcome([f.then for f in fired])["include"]:
            draft.exclude("not_in_audience", self.name, fired=[f.id for f in fired])

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same step over a whole frame (see ``engine.ColumnarOptimizer``)."""
        import polars as pl

        if not ctx.has(AUDIENCE_FILTER):
            return frame
        frame = ctx.run_rules(frame, AUDIENCE_FILTER)
        keep = ctx.outcome(AUDIENCE_FILTER, "include", pl.Boolean)
        return ctx.exclude(frame, pl.when(~keep).then(pl.lit("not_in_audience")))


class Eligibility:
    """Step 1c: blocked (fraud) customers are out; then the message's eligibility rules may exclude."""

    name = "eligibility"
    order = 30

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Exclude blocked customers, then with the reason of the first eligibility rule that fires."""
        if draft.facts.get("customer.blocked") is True:
            draft.exclude("blocked", self.name)
            return
        if ELIGIBILITY not in ctx.message.rulesets:
            return
        fired = ctx.run_rules(ELIGIBILITY, draft)
        reason = eligibility_outcome([f.then for f in fired])["exclude"]
        if reason:
            draft.exclude(reason, self.name, rule=fired[0].id)

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same step over a whole frame (see ``engine.ColumnarOptimizer``)."""
        import polars as pl

        blocked = ctx.flag("customer.blocked")
        if not ctx.has(ELIGIBILITY):
            return ctx.exclude(frame, pl.when(blocked).then(pl.lit("blocked")))
        frame = ctx.run_rules(frame, ELIGIBILITY, where=~blocked)
        if ctx.message.rulesets[ELIGIBILITY].hit_policy == "first":  # index 0 blocked, 1 none fired, 2… rules
            reasons = ["blocked", *(r or None for r in ctx.outcome_table(ELIGIBILITY, "exclude"))]
            index = pl.when(blocked).then(pl.lit(0, pl.Int32)).otherwise(ctx.fired_index(ELIGIBILITY) + 2)
            hit = pl.lit(pl.Series([r is not None for r in reasons], dtype=pl.Boolean)).gather(index)
            return ctx.exclude_where(frame, hit, pl.lit(pl.Series(reasons, dtype=pl.String)).gather(index))
        reason = ctx.outcome(ELIGIBILITY, "exclude", pl.String)
        reason = pl.when(reason != "").then(reason)  # an empty reason does not exclude
        return ctx.exclude(frame, pl.when(blocked).then(pl.lit("blocked")).otherwise(reason))


@hookimpl
def register_rule_kinds(register):
    """Register the audience_filter and eligibility rule kinds."""
    for kind in RULE_KINDS:
        register(kind)


@hookimpl
def register_optimizers(register):
    """Register the audience and eligibility steps."""
    register(Audience())
    register(Eligibility())
