"""The bulk plan: an audience frame → one decision row per recipient, equal to the per-recipient pipeline.

Steps: the local send time per distinct time zone and the ``time.*`` facts at that planned send instant
(computed in Python with zoneinfo, so DST is exact, then mapped onto the rows), ``message.*`` facts, then every
optimizer's ``columnar`` step in pipeline order, then the finish (variant ``default``,
``no_reachable_channel``: the constants of :mod:`engine.finish`; incentives are reserved after the plan, by
:meth:`engine.finish.Finish.frame`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from engine.columnar.context import (
    CHANNEL_CODE,
    CHANNEL_TABLE,
    CHANNELS,
    INCLUDED,
    REASON,
    SEND_AT,
    VARIANT,
    ColumnarContext,
    fired_column,
    fired_kind,
)
from engine.columnar.reach import reach_exprs
from engine.contracts import ColumnarOptimizer, is_active
from engine.facts import default_zone, time_facts, zone
from engine.finish import DEFAULT_VARIANT, NO_REACHABLE_CHANNEL
from engine.model import Message
from engine.registry import Registry
from engine.scheduling import local_send_time, run_time

ID = "customer.id"
TZ = "customer.timezone"
_TIME_TYPES = {"time.local_hour": pl.Int64, "time.local_minute": pl.Int64, "time.weekday": pl.String,
               "time.date": pl.String}


def unsupported(message: Message, registry: Registry, *, explain: bool = False, render: bool = False,
                preview: bool = True, slow_reach: bool = False) -> str | None:
    """Why the bulk plan cannot decide for this message (``None`` when it can).

    It needs: no trace or rendering asked for, a preview (nothing reserved), no ``enrich_facts``,
    ``check_delivery`` or ``engine_event`` hooks, every optimizer active for the message (``is_active``) a
    ``ColumnarOptimizer``, and every candidate channel
    registered and implementing ``reachability_expr`` (unless ``slow_reach`` allows the per-row path).
    """
    if explain or render:
        return "a trace or rendering was asked for"
    if not preview:
        return "not a preview"
    if registry.has_enrichers or registry.has_delivery_checks or registry.has_observers:
        return "enrich_facts, check_delivery or engine_event hooks are registered"
    for opt in registry.pipeline:
        if is_active(opt, message) and not isinstance(opt, ColumnarOptimizer):
            return f"optimizer {opt.name} has no columnar step"
    for name in candidate_channels(message, registry):
        if name not in registry.channels:
            return f"channel {name} is not registered"
        if not slow_reach and not callable(getattr(registry.channel(name), "reachability_expr", None)):
            return f"channel {name} has no reachability_expr"
    return None


def candidate_channels(message: Message, registry: Registry) -> list[str]:
    """Every channel a recipient of ``message`` could be offered, in first-mention order: those its rules
    name (in their kind's ``channel_fields``), its static ``channels``, then its creatives' channels."""
    names: list[str] = []
    for kind, rs in message.rulesets.items():
        spec = registry.kinds.get(kind)
        if spec is not None and spec.channel_fields:
            names += [c for r in rs.rules for c in spec.channels(r.then)]
    names += list(message.channels) + [c.channel for c in message.creatives]
    return list(dict.fromkeys(names))


def zone_table(zones: list[str | None], at: datetime, message: Message, default_tz: str) -> dict[str, list[Any]]:
    """The local send time for each zone name (unknown or null → the default zone) and the ``time.*`` facts
    at that planned send instant; ``at`` is "now" (it picks a recurring schedule's next run)."""
    default = default_zone(default_tz)
    base = run_time(message.schedule, at, message.campaign)
    out: dict[str, list[Any]] = {k: [] for k in (*_TIME_TYPES, SEND_AT)}
    for name in zones:
        tz = zone(name) or default
        send = local_send_time(base, message.schedule.local_time, tz)
        for k, v in time_facts(send, tz).items():  # the decision is made for the moment of sending
            out[k].append(v)
        out[SEND_AT].append(send)
    return out


def with_facts(frame: pl.DataFrame, message: Message, at: datetime, default_tz: str = "UTC") -> pl.LazyFrame:
    """The audience frame with ``time.*``, ``message.*``, ``_send_at`` and the initial decision columns."""
    at = at.astimezone(UTC)
    zones = frame.get_column(TZ).unique().to_list() if TZ in frame.columns else []
    keys = [z for z in zones if z is not None]
    table = zone_table([None, *keys], at, message, default_tz)
    lazy = frame.lazy()
    if keys:  # one hash look-up per row (zone → index), then a gather per fact column
        index = pl.col(TZ).replace_strict(keys, range(1, len(keys) + 1), default=0, return_dtype=pl.UInt32)
        lazy = lazy.with_columns(index.alias("_zone"))
    cols: list[pl.Expr] = []
    for name, values in table.items():
        dtype = _TIME_TYPES.get(name, pl.Datetime("us", "UTC"))
        if keys:
            cols.append(pl.lit(pl.Series(values, dtype=dtype)).gather(pl.col("_zone")).alias(name))
        else:
            cols.append(pl.lit(values[0], dtype).alias(name))
    cols += [pl.lit(v).alias(k) for k, v in message.facts.items() if v is not None and k not in frame.columns]
    cols += [pl.lit(True).alias(INCLUDED), pl.lit(None, pl.String).alias(REASON),
             pl.lit(None, pl.String).alias(VARIANT), pl.lit([], pl.List(pl.String)).alias(CHANNELS)]
    return lazy.with_columns(cols)


def decision_plan(frame: pl.DataFrame, message: Message, registry: Registry, at: datetime, *, default_tz: str = "UTC",
         slow_reach: bool = True) -> pl.LazyFrame:
    """The lazy decision plan for ``frame``; see :func:`decision_columns` for what it yields."""
    lazy = with_facts(frame, message, at, default_tz)
    schema = lazy.collect_schema()
    channels = candidate_channels(message, registry)
    reach = reach_exprs(channels, message, registry, schema, slow=slow_reach)
    ctx = ColumnarContext(message, registry, at.astimezone(UTC), schema, reach)
    for opt in registry.pipeline:
        if not is_active(opt, message):
            continue
        if not isinstance(opt, ColumnarOptimizer):
            raise ValueError(f"optimizer {opt.name} has no columnar step")
        coded = CHANNEL_TABLE in ctx.state
        before = _channels_plan(lazy) if coded else None
        lazy = opt.columnar(lazy, ctx)
        if coded and _channels_plan(lazy) != before:  # a later step changed ``_channels``: use the lists
            del ctx.state[CHANNEL_TABLE]
    table = ctx.state.get(CHANNEL_TABLE)
    inc = pl.col(INCLUDED)
    lazy = lazy.with_columns(pl.when(inc).then(pl.col(VARIANT).fill_null(DEFAULT_VARIANT)).alias(VARIANT))
    if table is None:
        none_left = pl.col(CHANNELS).list.len() == 0
        channel = pl.col(CHANNELS).list.first()
        fallbacks = pl.col(CHANNELS).list.slice(1)
    else:  # one gather per decision column from the channel code's table
        code = pl.when(inc).then(pl.col(CHANNEL_CODE)).otherwise(0).fill_null(0)  # entry 0 is the empty list
        none_left = pl.lit(pl.Series([not t for t in table], dtype=pl.Boolean)).gather(code)
        channel = pl.lit(pl.Series([t[0] if t else None for t in table], dtype=pl.String)).gather(code)
        fallbacks = pl.lit(pl.Series([t[1:] for t in table], dtype=pl.List(pl.String))).gather(code)
    lazy = ctx.exclude(lazy, pl.when(none_left).then(pl.lit(NO_REACHABLE_CHANNEL)))
    have = lazy.collect_schema()
    missing = [pl.lit(None, pl.Int32).alias(fired_column(k)) for k in message.rulesets if fired_column(k) not in have]
    kinds = list(registry.kinds)  # the fired columns in pipeline order: the order of a decision's ``fired``
    ordered = sorted(message.rulesets, key=lambda k: kinds.index(k) if k in kinds else len(kinds))
    return lazy.with_columns(missing).select(decision_columns(message, channel, fallbacks, kinds=ordered))


def _channels_plan(lazy: pl.LazyFrame) -> str:
    """The optimized plan of ``_channels`` alone (steps that do not touch it are pruned from it)."""
    return lazy.select(CHANNELS).explain()


def decision_columns(message: Message, channel: pl.Expr | None = None, fallbacks: pl.Expr | None = None, *,
                     kinds: Sequence[str] | None = None) -> list[pl.Expr]:
    """The decision columns: ``customer``, ``included``, ``excluded_reason``, ``variant``, ``channel``,
    ``fallbacks``, ``send_at`` and one ``_fired:<kind>`` per ruleset of the message, in the order of ``kinds``
    (default: the message's) (``channel`` and ``fallbacks`` default to the first and the rest of
    ``_channels``)."""
    inc = pl.col(INCLUDED)
    coded = channel is not None  # gathers that already give null / [] on excluded rows
    channel = pl.col(CHANNELS).list.first() if channel is None else channel
    fallbacks = pl.col(CHANNELS).list.slice(1) if fallbacks is None else fallbacks
    return [
        pl.col(ID).alias("customer"),
        inc.alias("included"),
        pl.col(REASON).alias("excluded_reason"),
        pl.when(inc).then(pl.col(VARIANT)).alias("variant"),
        (channel if coded else pl.when(inc).then(channel)).alias("channel"),
        (fallbacks if coded else pl.when(inc).then(fallbacks).otherwise(pl.lit([], pl.List(pl.String))))
        .alias("fallbacks"),
        pl.when(inc).then(pl.col(SEND_AT)).alias("send_at"),
        *(pl.col(fired_column(kind)) for kind in (message.rulesets if kinds is None else kinds)),
    ]


def evaluate_frame(frame: pl.DataFrame, message: Message, registry: Registry, at: datetime, *,
                   default_tz: str = "UTC", slow_reach: bool = True) -> pl.DataFrame:
    """The decision frame for a whole audience frame (one row per recipient, in order)."""
    return decision_plan(frame, message, registry, at, default_tz=default_tz, slow_reach=slow_reach).collect()


def fired_lists(message: Message, row: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """A decision row's ``fired`` mapping (ruleset name → fired ids) for the rulesets that ran, in the order of
    the row's fired columns (the pipeline order, see :func:`decision_plan`)."""
    out: dict[str, tuple[str, ...]] = {}
    for key, value in row.items():
        kind = fired_kind(key)
        if kind is None or kind not in message.rulesets:
            continue
        rs = message.rulesets[kind]
        if value is None:
            continue
        if rs.hit_policy == "first":
            out[rs.name] = () if value < 0 else (rs.rules[value].id,)
        else:
            out[rs.name] = tuple(value)
    return out
