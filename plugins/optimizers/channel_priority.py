"""Channel priority: the ordered candidate channels, filtered by creative, reachability and delivery checks."""

from __future__ import annotations

from engine import DecisionDraft, EvaluationContext, hookimpl, outcome, unreachable_reason


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
        if "channel_priority" in message.rulesets:
            chosen = outcome("channel_priority", [f.then for f in ctx.run_rules("channel_priority", draft)])["channels"]
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
        message, registry = ctx.message, ctx.registry
        candidates = self.candidates(draft, ctx)
        draft.note(self.name, "candidates", channels=list(candidates))
        cached = ctx.state.get("channel_priority:run")
        if cached is None:
            reach = {n: r.obj.reachability for n, r in registry.channels.items()}
            cached = ctx.state["channel_priority:run"] = ({}, reach)
        has_creative, reach = cached
        watched, customer = draft.watched, draft.customer
        survivors = []
        for name in candidates:
            key = (name, draft.variant)
            ok = has_creative.get(key)
            if ok is None:
                ok = has_creative[key] = message.creative(name, draft.variant) is not None
            if not ok:
                if watched:
                    draft.drop_channel(name, self.name, "no_creative_for_variant", variant=draft.variant)
                continue
            status = reach[name](customer, message)
            if not status.reachable:
                if watched:
                    draft.drop_channel(name, self.name, str(status),
                                       reason=unreachable_reason(registry.channel(name), customer, message, status))
                continue
            if registry.has_delivery_checks:
                issues = [i for found in registry.hook.check_delivery(
                    customer=draft.customer, channel=name, message=message, draft=draft) for i in (found or ())]
                errors = [i.message for i in issues if i.is_error]
                if errors:
                    draft.drop_channel(name, self.name, "delivery_check", issues=errors)
                    continue
            survivors.append(name)
        draft.channels = survivors

    def columnar(self, frame, ctx):
        """The same step over a whole frame: ``_channels`` of the included rows, filtered by creative and
        reachability (the bulk path is only chosen when no ``check_delivery`` hook is registered)."""
        import polars as pl

        message = ctx.message
        static = list(message.channels) or list(dict.fromkeys(c.channel for c in message.creatives))
        listed = pl.lit(static, pl.List(pl.String))
        rs = message.rulesets.get("channel_priority")
        code = None
        if rs is not None:
            frame = ctx.run_rules(frame, "channel_priority")
            universe = list(dict.fromkeys([c for r in rs.rules for c in r.then["channels"]] + static))
            keep = {name: ctx.creative_ok(name) & ctx.reachable(name) for name in universe}
            if rs.hit_policy == "first":  # the fired index picks one of R + 1 candidate lists
                lists = [outcome("channel_priority", [])["channels"] or static,
                         *(outcome("channel_priority", [r.then])["channels"] or static for r in rs.rules)]
                code = ctx.channel_code(pl.col("_fired:channel_priority") + 1, lists, keep)
            if code is None:
                chosen = ctx.outcome("channel_priority", "channels")
                candidates = pl.when(chosen.list.len() > 0).then(chosen).otherwise(listed)
                channels = ctx.keep_channels(candidates, keep, universe)
        else:
            keep = {name: ctx.creative_ok(name) & ctx.reachable(name) for name in static}
            code = ctx.channel_code(pl.lit(0, pl.UInt32), [static], keep)
            if code is None:
                channels = ctx.keep_channels(static, keep, static)
        if code is not None:
            return ctx.set_channel_code(frame, *code)
        return frame.with_columns(pl.when(pl.col("_included")).then(channels).otherwise(pl.col("_channels"))
                                  .alias("_channels"))


@hookimpl
def register_optimizers(register):
    """Register the channel priority step."""
    register(ChannelPriority())
