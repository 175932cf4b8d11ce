"""Cost: ranks the reachable channels by expected value minus cost (PRODUCT.md §4 step 4).

Active for a message when ``message.optimizers["cost"]`` is present. Settings (the message's, over the
plugin's org defaults): ``value`` (what one conversion is worth, default 1.0), ``channels`` (per channel
``{cost, conversion_rate}``; ``cost`` defaults to the channel plugin's ``cost``, ``conversion_rate`` to
``default_conversion_rate``, itself 0), and ``drop_unprofitable`` (drop channels whose margin is below 0;
a recipient left with none is excluded with ``unprofitable``).

``margin = conversion_rate × value − cost``; channels are sorted by margin, highest first, and ties keep
the priority order. The figures are recorded in the trace. Runs after channel_priority (order 50) has
filtered the candidates by creative and reachability, and after frequency_cap (55).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import DecisionDraft, EvaluationContext, Issue, Message, hookimpl

SETTINGS = ("value", "channels", "default_conversion_rate", "drop_unprofitable")


def figure_problems(own: Mapping[str, Any]) -> list[Issue]:
    """What is wrong with cost settings (a message's ``optimizers.cost`` or the plugin's), each at its path."""
    issues = [Issue(k, "invalid", f"{k} is a number ≥ 0, not {own[k]!r}") for k in ("value",)
              if k in own and not _number(own[k], 0, None)]
    rate = own.get("default_conversion_rate")
    if rate is not None and not _number(rate, 0, 1):
        issues.append(Issue("default_conversion_rate", "invalid", "a conversion rate is a number from 0 to 1"))
    channels = own.get("channels") or {}
    if not isinstance(channels, Mapping):
        return [*issues, Issue("channels", "invalid", "channels maps a channel to {cost, conversion_rate}")]
    for name, figures in channels.items():
        if not isinstance(figures, Mapping):
            issues.append(Issue(f"channels.{name}", "invalid", "channel figures are {cost, conversion_rate}"))
            continue
        if "cost" in figures and not _number(figures["cost"], 0, None):
            issues.append(Issue(f"channels.{name}.cost", "invalid", "cost is a number ≥ 0"))
        if "conversion_rate" in figures and not _number(figures["conversion_rate"], 0, 1):
            issues.append(Issue(f"channels.{name}.conversion_rate", "invalid", "a conversion rate is a number from 0 to 1"))
    return issues
if TYPE_CHECKING:
    import polars as pl

    from engine import ColumnarContext


class Cost:
    """Channel ranking by expected value minus cost (order 60)."""

    name = "cost"
    order = 60

    def __init__(self, settings: Mapping[str, Any]):
        self.defaults = {k: settings[k] for k in SETTINGS if k in settings}
        problems = figure_problems(self.defaults)
        if problems:
            raise ValueError("; ".join(f"{i.path}: {i.message}" for i in problems))

    def settings(self, message: Message) -> Mapping[str, Any] | None:
        """The merged settings for ``message`` (``None``: inactive)."""
        own = message.optimizers.get(self.name)
        if own is None:
            return None
        channels = {**(self.defaults.get("channels") or {})}
        for name, figures in (own.get("channels") or {}).items():
            channels[name] = {**channels.get(name, {}), **figures}
        return {**self.defaults, **own, "channels": channels}

    def validate(self, message: Message) -> list[Issue]:
        """``value`` and each channel's ``cost`` are numbers ≥ 0; conversion rates lie in [0, 1]."""
        return figure_problems(message.optimizers.get(self.name) or {})

    def active(self, message: Message) -> bool:
        """Whether ranking by cost applies to ``message``."""
        return self.settings(message) is not None

    def figures(self, message: Message, registry: Any) -> dict[str, dict[str, float]] | None:
        """Per registered channel: cost, conversion rate, expected value and margin."""
        settings = self.settings(message)
        if settings is None:
            return None
        value = float(settings.get("value", 1.0))
        default_rate = float(settings.get("default_conversion_rate", 0.0))
        out = {}
        for name, reg in registry.channels.items():
            given = settings["channels"].get(name, {})
            cost = float(given.get("cost", reg.obj.cost))
            rate = float(given.get("conversion_rate", default_rate))
            ev = rate * value
            out[name] = {"cost": cost, "conversion_rate": rate, "expected_value": round(ev, 6),
                         "margin": round(ev - cost, 6)}
        return out

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Reorder ``draft.channels`` by margin and trace the figures."""
        state = ctx.state.get(self.name)
        if state is None:
            figures = self.figures(ctx.message, ctx.registry)
            settings = self.settings(ctx.message) or {}
            state = ctx.state[self.name] = (figures, bool(settings.get("drop_unprofitable")))
        figures, drop = state
        if figures is None or not draft.channels:
            return
        ranked = sorted(draft.channels, key=lambda c: -figures[c]["margin"])
        draft.note(self.name, "ranked", channels=ranked, figures={c: figures[c] for c in ranked})
        draft.channels = ranked
        if drop:
            for c in list(ranked):
                if figures[c]["margin"] < 0:
                    draft.drop_channel(c, self.name, "unprofitable", margin=figures[c]["margin"])
            if not draft.channels:
                draft.exclude("unprofitable", self.name)

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same ranking over a polars frame: the channels sorted by the (per-channel) margin."""
        import polars as pl

        figures = self.figures(ctx.message, ctx.registry)
        if figures is None:
            return frame
        drop = bool((self.settings(ctx.message) or {}).get("drop_unprofitable"))
        neg = {c: -f["margin"] for c, f in figures.items()}
        key = pl.element().replace_strict(neg, default=0.0, return_dtype=pl.Float64)
        ranked = ctx.channels.list.eval(pl.element().sort_by(key, maintain_order=True))
        if drop:  # a recipient whose every channel is unprofitable is excluded
            losers = [c for c, f in figures.items() if f["margin"] < 0]
            ranked = ranked.list.eval(pl.element().filter(~pl.element().is_in(losers)))
            emptied = (ctx.channels.list.len() > 0) & (ranked.list.len() == 0)
            frame = ctx.exclude_where(frame, emptied, pl.lit("unprofitable"))
        return ctx.set_channels(frame, ranked)


def _number(value: Any, low: float | None, high: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


@hookimpl
def register_optimizers(register, settings):
    """Register the cost ranking step (plugin settings: org-wide ``value``, ``channels`` figures)."""
    register(Cost(settings))
