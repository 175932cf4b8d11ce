"""Decision frames → Decision objects (in batches) and → the Summary, without a Python object per row for
the summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import polars as pl

from engine.columnar.plan import fired_lists
from engine.model import Customer, Decision, Message

BATCH = 50_000
Reserve = Callable[[str, int], Mapping[str, Any] | None]


def iter_decisions(out: pl.DataFrame, message: Message, *, base_send_at: datetime | None = None,
                   reserve: Reserve | None = None, batch: int = BATCH) -> Iterator[Decision]:
    """Decisions of a decision frame, in row order.

    :param base_send_at: the run time; a row whose send time equals it (no local send time, not moved)
        carries this very datetime, as on the per-recipient path.
    :param reserve: ``(customer id, row index) → incentive`` for included rows, when the message has one.
    """
    versions = MappingProxyType({rs.name: rs.version for rs in message.rulesets.values()})
    constant_send = base_send_at if not message.schedule.local_time else None
    for start in range(0, out.height, batch):
        for i, row in enumerate(out.slice(start, batch).iter_rows(named=True), start=start):
            included = row["included"]
            send_at = row["send_at"] if included else None
            if send_at is not None and send_at == constant_send:
                send_at = constant_send  # the same datetime object (and offset) as the per-recipient path
            yield Decision(
                customer=row["customer"],
                included=included,
                excluded_reason=row["excluded_reason"],
                variant=row["variant"],
                channel=row["channel"],
                fallbacks=tuple(row["fallbacks"] or ()),
                incentive=reserve(row["customer"], i) if included and reserve is not None else None,
                send_at=send_at,
                rules_versions=versions,
                fired=MappingProxyType(fired_lists(message, row)),
            )


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
