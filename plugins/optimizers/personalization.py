"""Personalization: the variant (and template vars) chosen by the message's personalization rules.

Owns the ``personalization`` rule kind: a rule's ``then`` is ``{variant, vars}``; the outcome is the first
fired rule's variant (``None`` when none fired) and the ``vars`` of every fired rule merged (earlier wins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from engine import DecisionDraft, EvaluationContext, Issue, Message, RuleKind, hookimpl

if TYPE_CHECKING:
    import polars as pl

    from engine import ColumnarContext

KIND = "personalization"


class PersonalizationThen(BaseModel):
    """What a personalization rule selects."""

    model_config = ConfigDict(extra="forbid")

    variant: str = Field(min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict, description="extra template variables")


def personalization_outcome(thens: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``variant`` (the first fired rule's, ``None`` when none fired) and ``vars`` (merged, earlier wins)."""
    merged: dict[str, Any] = {}
    for t in reversed(thens):
        extra = t.get("vars")
        if extra:
            merged.update(extra)
    return {"variant": thens[0]["variant"] if thens else None, "vars": merged}


def check_message(message: Message) -> list[Issue]:
    """The strategy and the ruleset go together, and every variant a rule picks has a creative."""
    issues = []
    rs = message.rulesets.get(KIND)
    chosen = KIND in message.strategy
    if chosen and rs is None:
        issues.append(Issue("rules.personalization", "required", "the personalization strategy needs a personalization ruleset"))
    if rs is not None and not chosen:
        issues.append(Issue("message.strategy", "strategy", "a personalization ruleset is given but the strategy does not include personalization"))
    if rs is not None:
        variants = {c.variant for c in message.creatives}
        for rule in rs.rules:
            v = rule.then.get("variant")
            if v not in variants and "default" not in variants:
                issues.append(Issue("creatives", "variant_without_creative", f"variant {v!r} (rule {rule.id}) has no creative"))
    return issues


RULE_KIND = RuleKind(KIND, PersonalizationThen, personalization_outcome, order=40, strategy=True,
                     description="picks the variant (first fired) and template vars (merged)", validate=check_message)


class Personalization:
    """Step 3: the first fired rule's variant (``default`` when none fires); ``vars`` merged from all fired."""

    name = "personalization"
    order = 40

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Set ``draft.variant`` and ``draft.vars``."""
        if KIND not in ctx.message.rulesets:
            draft.variant = "default"
            return
        result = personalization_outcome([f.then for f in ctx.run_rules(KIND, draft)])
        draft.variant = result["variant"] or "default"
        draft.vars = result["vars"]
        if draft.explain:
            draft.note(self.name, "variant", variant=draft.variant)

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same step over a whole frame: the variant of the included rows (vars are for rendering)."""
        import polars as pl

        if not ctx.has(KIND):
            variant = pl.lit("default")
        elif ctx.message.rulesets[KIND].hit_policy == "first":  # one gather, "default" in the table
            frame = ctx.run_rules(frame, KIND)
            table = [v or "default" for v in ctx.outcome_table(KIND, "variant")]
            variant = pl.lit(pl.Series(table, dtype=pl.String)).gather(ctx.fired_index(KIND) + 1)
        else:
            frame = ctx.run_rules(frame, KIND)
            chosen = ctx.outcome(KIND, "variant", pl.String)
            variant = pl.when(chosen.is_null() | (chosen == "")).then(pl.lit("default")).otherwise(chosen)
        return ctx.set_variant(frame, variant)


@hookimpl
def register_rule_kinds(register):
    """Register the personalization rule kind."""
    register(RULE_KIND)


@hookimpl
def register_optimizers(register):
    """Register the personalization step."""
    register(Personalization())
