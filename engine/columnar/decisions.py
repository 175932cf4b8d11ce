"""Decision frames → Decision objects (in batches) and → the Summary, without a Python object per row for
the summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

import polars as pl

from engine.columnar.plan import fired_lists
from engine.errors import EngineError
from engine.model import Customer, Decision, Message

BATCH = 50_000
#: ``(row index, send_at) → incentive`` of an included row; raises ``EngineError`` when there is none for it
Reserve = Callable[[int, datetime], Mapping[str, Any]]
#: told about an included row whose incentive is unavailable (its decision as included, and the error)
Unavailable = Callable[[Decision, EngineError], None]
UNAVAILABLE = "incentive_unavailable"


def iter_decisions(out: pl.DataFrame, message: Message, *, base_send_at: datetime | None = None,
                   reserve: Reserve | None = None, unavailable: Unavailable | None = None,
                   batch: int = BATCH) -> Iterator[Decision]:
    """Decisions of a decision frame, in row order.

    :param base_send_at: the run time; a row whose send time equals it (no local send time, not moved)
        carries this very datetime, as on the per-recipient path.
    :param reserve: the incentive of an included row, given its send time, when the message has one.
        Rows are reserved in order, so a cap refuses the same recipients as on the per-recipient path: a
        row ``reserve`` refuses becomes excluded (``incentive_unavailable``) and ``unavailable`` is told.
    """
    versions = MappingProxyType({rs.name: rs.version for rs in message.rulesets.values()})
    constant_send = base_send_at if not message.schedule.local_time else None
    for start in range(0, out.height, batch):
        for i, row in enumerate(out.slice(start, batch).iter_rows(named=True), start=start):
            included = row["included"]
            send_at = row["send_at"] if included else None
            if send_at is not None and send_at == constant_send:
                send_at = constant_send  # the same datetime object (and offset) as the per-recipient path
            decision = Decision(
                customer=row["customer"],
                included=included,
                excluded_reason=row["excluded_reason"],
                variant=row["variant"],
                channel=row["channel"],
                fallbacks=tuple(row["fallbacks"] or ()),
                send_at=send_at,
                rules_versions=versions,
                fired=MappingProxyType(fired_lists(message, row)),
            )
            if included and reserve is not None:
                decision = _with_incentive(decision, i, reserve, unavailable)
            yield decision


def _with_incentive(decision: Decision, i: int, reserve: Reserve, unavailable: Unavailable | None) -> Decision:
    """``decision`` (still being built) with row ``i``'s incentive, or excluded as on the per-recipient path."""
    try:
        decision.incentive = reserve(i, decision.send_at)  # type: ignore[arg-type]  # included rows have one
    except EngineError as exc:
        if unavailable is not None:
            unavailable(replace(decision), exc)
        decision.included, decision.excluded_reason, decision.send_at = False, UNAVAILABLE, None
        decision.variant, decision.channel, decision.fallbacks = None, None, ()
    return decision


def summary_counts(out: pl.DataFrame | pl.LazyFrame, costs: Mapping[str, float]) -> dict[str, Any]:
    """The pipeline Summary's ``as_dict()`` form, computed with group-bys."""
    lazy = out.lazy()
    inc = pl.col("included")
    totals = lazy.select(pl.len().alias("total"), inc.sum().alias("included")).collect().row(0, named=True)
    channels = _counts(lazy.filter(inc & pl.col("channel").is_not_null()), "channel")
    variants = _counts(lazy.filter(inc & pl.col("variant").is_not_null()), "variant")
    reasons = _counts(lazy.filter(~inc).with_columns(pl.col("excluded_reason").fill_null("unknown")), "excluded_reason")
    cost = sum(n * costs.get(name, 0.0) for name, n in channels.items())
    return {
        "total": totals["total"],
        "included": totals["included"] or 0,
        "excluded": totals["total"] - (totals["included"] or 0),
        "channels": channels,
        "variants": variants,
        "exclusion_reasons": reasons,
        "estimated_cost": round(cost, 4),
    }


def _counts(lazy: pl.LazyFrame, col: str) -> dict[str, int]:
    df = lazy.group_by(col).agg(pl.len().alias("n")).collect()
    return dict(sorted(zip(df[col].to_list(), df["n"].to_list(), strict=True)))


def customer_of(row: Mapping[str, Any]) -> Customer:
    """A Customer from an audience frame row (``customer.*`` columns, nulls left out)."""
    attrs = {k[9:]: v for k, v in row.items() if k.startswith("customer.") and k != "customer.id" and v is not None}
    return Customer(str(row["customer.id"]), attrs)
