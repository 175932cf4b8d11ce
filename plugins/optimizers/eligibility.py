"""Membership and eligibility: the audience_filter ruleset, blocked customers, eligibility rules."""

from __future__ import annotations

from engine import DecisionDraft, EvaluationContext, hookimpl, outcome


class Audience:
    """Step 1a: a message with an ``audience_filter`` ruleset includes only customers it selects."""

    name = "audience"
    order = 10

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Exclude with ``not_in_audience`` unless the filter includes the customer."""
        if "audience_filter" not in ctx.message.rulesets:
            return
        fired = ctx.run_rules("audience_filter", draft)
        if not outcome("audience_filter", [f.then for f in fired])["include"]:
            draft.exclude("not_in_audience", self.name, fired=[f.id for f in fired])

    def columnar(self, frame, ctx):
        """The same step over a whole frame (see ``engine.contracts.ColumnarOptimizer``)."""
        import polars as pl

        if not ctx.has("audience_filter"):
            return frame
        frame = ctx.run_rules(frame, "audience_filter")
        keep = ctx.outcome("audience_filter", "include")
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
        if "eligibility" not in ctx.message.rulesets:
            return
        fired = ctx.run_rules("eligibility", draft)
        reason = outcome("eligibility", [f.then for f in fired])["exclude"]
        if reason:
            draft.exclude(reason, self.name, rule=fired[0].id)

    def columnar(self, frame, ctx):
        """The same step over a whole frame (see ``engine.contracts.ColumnarOptimizer``)."""
        import polars as pl

        blocked = ctx.flag("customer.blocked")
        if not ctx.has("eligibility"):
            return ctx.exclude(frame, pl.when(blocked).then(pl.lit("blocked")))
        frame = ctx.run_rules(frame, "eligibility", where=~blocked)
        if ctx.message.rulesets["eligibility"].hit_policy == "first":  # index 0 blocked, 1 none fired, 2… rules
            reasons = ["blocked", *(r or None for r in ctx.outcome_table("eligibility", "exclude"))]
            index = pl.when(blocked).then(pl.lit(0, pl.Int32)).otherwise(pl.col("_fired:eligibility") + 2)
            hit = pl.lit(pl.Series([r is not None for r in reasons], dtype=pl.Boolean)).gather(index)
            return ctx.exclude_where(frame, hit, pl.lit(pl.Series(reasons, dtype=pl.String)).gather(index))
        reason = ctx.outcome("eligibility", "exclude")
        reason = pl.when(reason != "").then(reason)  # an empty reason does not exclude
        return ctx.exclude(frame, pl.when(blocked).then(pl.lit("blocked")).otherwise(reason))


@hookimpl
def register_optimizers(register):
    """Register the audience and eligibility steps."""
    register(Audience())
    register(Eligibility())
