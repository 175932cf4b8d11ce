"""Personalization: the variant (and template vars) chosen by the message's personalization rules."""

from __future__ import annotations

from engine import DecisionDraft, EvaluationContext, hookimpl, outcome


class Personalization:
    """Step 3: the first fired rule's variant (``default`` when none fires); ``vars`` merged from all fired."""

    name = "personalization"
    order = 40

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Set ``draft.variant`` and ``draft.vars``."""
        if "personalization" not in ctx.message.rulesets:
            draft.variant = "default"
            return
        result = outcome("personalization", [f.then for f in ctx.run_rules("personalization", draft)])
        draft.variant = result["variant"] or "default"
        draft.vars = result["vars"]
        draft.note(self.name, "variant", variant=draft.variant)

    def columnar(self, frame, ctx):
        """The same step over a whole frame: ``_variant`` of the included rows (vars are for rendering)."""
        import polars as pl

        if not ctx.has("personalization"):
            variant = pl.lit("default")
        elif ctx.message.rulesets["personalization"].hit_policy == "first":  # one gather, "default" in the table
            frame = ctx.run_rules(frame, "personalization")
            table = [v or "default" for v in ctx.outcome_table("personalization", "variant")]
            variant = pl.lit(pl.Series(table, dtype=pl.String)).gather(pl.col("_fired:personalization") + 1)
        else:
            frame = ctx.run_rules(frame, "personalization")
            chosen = ctx.outcome("personalization", "variant")
            variant = pl.when(chosen.is_null() | (chosen == "")).then(pl.lit("default")).otherwise(chosen)
        return frame.with_columns(pl.when(pl.col("_included")).then(variant).otherwise(pl.col("_variant"))
                                  .alias("_variant"))


@hookimpl
def register_optimizers(register):
    """Register the personalization step."""
    register(Personalization())
