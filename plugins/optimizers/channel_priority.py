"""Channel priority: the ordered candidate channels, filtered by creative, reachability and delivery checks.

Owns the ``channel_priority`` rule kind: a rule's ``then`` is ``{channels: [...]}`` (registered channel
names); the outcome is the fired rules' channels in order, duplicates removed (``None`` when none fired).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from engine import (
    ContactReachability,
    DecisionDraft,
    EvaluationContext,
    Issue,
    Message,
    Reachability,
    RuleKind,
    hookimpl,
    unreachable_reason,
)

if TYPE_CHECKING:
    import polars as pl

    from engine import ColumnarContext

KIND = "channel_priority"


class ChannelPriorityThen(BaseModel):
    """The ordered channels a channel_priority rule selects."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] = Field(min_length=1)


def channel_priority_outcome(thens: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``channels``: the fired rules' channels in order, duplicates removed (``None`` when none fired)."""
    return {"channels": list(dict.fromkeys(c for t in thens for c in t["channels"])) if thens else None}


def check_message(message: Message) -> list[Issue]:
    """The channel_priority strategy needs static channels or a channel_priority ruleset."""
    if KIND in message.strategy and not (message.channels or KIND in message.rulesets):
        return [Issue("channels", "required", "the channel_priority strategy needs channels or a channel_priority ruleset")]
    return []


RULE_KIND = RuleKind(KIND, ChannelPriorityThen, channel_priority_outcome, order=50, channel_fields=("channels",),
                     strategy=True, description="orders the candidate channels (fired rules' channels, in order)",
                     validate=check_message)


#: the reachable statuses; ``in`` on a tuple of enum members compares identities first, cheaper than
#: ``status.reachable`` (a set look-up that hashes the member in Python) once per candidate and recipient
_REACHABLE = tuple(r for r in Reachability if r.reachable)


class ChannelPriority:
    """Step 4: candidates come from the channel_priority ruleset, else the message's static ``channels``,
    else the channels of its creatives (file order). A candidate is dropped when the variant has no
    creative for it, when the customer is not reachable on it, or when a ``check_delivery`` hook reports
    an error. The first survivor is the channel, the rest are fallbacks."""

    name = "channel_priority"
    order = 50

    def candidates(self, draft: DecisionDraft, ctx: EvaluationContext) -> list[str]:
        """The ordered channels before filtering."""
        message = ctx.message
        if KIND in message.rulesets:
            chosen = channel_priority_outcome([f.then for f in ctx.run_rules(KIND, draft)])["channels"]
            if chosen:
                return list(chosen)
        if message.channels:
            return list(message.channels)
        cache = ctx.state.get(self.name)
        if cache is None:
            cache = ctx.state[self.name] = list(dict.fromkeys(c.channel for c in message.creatives))
        return list(cache)

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Fill ``draft.channels`` with the reachable candidates, tracing every drop."""
        message = ctx.message
        cached = ctx.state.get("channel_priority:run")
        if cached is None:  # per run: each channel's reachability, the static candidates (no ruleset), …
            reach = {n: ContactReachability.reachability_of(r.obj) for n, r in ctx.registry.channels.items()}
            static = None if KIND in message.rulesets else tuple(self.candidates(draft, ctx))
            cached = ctx.state["channel_priority:run"] = ({}, reach, ctx.has_delivery_checks, static)
        creatives, reach, checks, static = cached
        candidates = static if static is not None else self.candidates(draft, ctx)
        if draft.explain:
            draft.note(self.name, "candidates", channels=list(candidates))
        watched, customer, variant = draft.explain or draft.observer is not None, draft.customer, draft.variant
        has_creative = creatives.get(variant)
        if has_creative is None:
            has_creative = creatives[variant] = {}
        survivors = []
        for name in candidates:
            ok = has_creative.get(name)
            if ok is None:
                ok = has_creative[name] = message.creative(name, variant) is not None
            if not ok:
                if watched:
                    draft.drop_channel(name, self.name, "no_creative_for_variant", variant=variant)
                continue
            status = reach[name](customer, message)
            if status not in _REACHABLE:
                if watched:
                    draft.drop_channel(name, self.name, str(status), reason=unreachable_reason(
                        ctx.registry.channel(name), customer, message, status))
                continue
            if checks:
                errors = [i.message for i in ctx.check_delivery(draft, name) if i.is_error]
                if errors:
                    draft.drop_channel(name, self.name, "delivery_check", issues=errors)
                    continue
            survivors.append(name)
        draft.channels = survivors

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same step over a whole frame: the channels of the included rows, filtered by creative and
        reachability (the bulk path is only chosen when no ``check_delivery`` hook is registered)."""
        import polars as pl

        message = ctx.message
        static = list(message.channels) or list(dict.fromkeys(c.channel for c in message.creatives))
        listed = pl.lit(static, pl.List(pl.String))
        rs = message.rulesets.get(KIND)
        code = None
        if rs is not None:
            frame = ctx.run_rules(frame, KIND)
            universe = list(dict.fromkeys([c for r in rs.rules for c in r.then["channels"]] + static))
            keep = {name: ctx.creative_ok(name) & ctx.reachable(name) for name in universe}
            if rs.hit_policy == "first":  # the fired index picks one of R + 1 candidate lists
                lists = [chosen or static for chosen in ctx.outcome_table(KIND, "channels")]
                code = ctx.channel_code(ctx.fired_index(KIND) + 1, lists, keep)
            if code is None:
                chosen = ctx.outcome(KIND, "channels", pl.List(pl.String))
                candidates = pl.when(chosen.list.len() > 0).then(chosen).otherwise(listed)
                channels = ctx.keep_channels(candidates, keep, universe)
        else:
            keep = {name: ctx.creative_ok(name) & ctx.reachable(name) for name in static}
            code = ctx.channel_code(pl.lit(0, pl.UInt32), [static], keep)
            if code is None:
                channels = ctx.keep_channels(static, keep, static)
        if code is not None:
            return ctx.set_channel_code(frame, *code)
        return ctx.set_channels(frame, channels)


@hookimpl
def register_rule_kinds(register):
    """Register the channel_priority rule kind."""
    register(RULE_KIND)


@hookimpl
def register_optimizers(register):
    """Register the channel priority step."""
    register(ChannelPriority())
