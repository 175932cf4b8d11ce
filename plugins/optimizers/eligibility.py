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


@hookimpl
def register_optimizers(register):
    """Register the audience and eligibility steps."""
    register(Audience())
    register(Eligibility())
