"""Helpers to check that an optimizer's ``columnar`` step equals its ``apply`` step row by row."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import polars as pl

from engine import ColumnarContext, Customer, DecisionDraft, EvaluationContext, Message

SCHEMA = {
    "customer.id": pl.String, "customer.timezone": pl.String, "_included": pl.Boolean, "_reason": pl.String,
    "_variant": pl.String, "_channels": pl.List(pl.String), "_send_at": pl.Datetime("us", "UTC"),
}


def drafts(customers: list[Customer], channels: list[str], send_at: datetime) -> list[DecisionDraft]:
    """Included drafts with the given candidate channels (every third one already excluded upstream)."""
    out = []
    for i, c in enumerate(customers):
        d = DecisionDraft(c, {"customer.id": c.id}, send_at, explain=True, variant="default", channels=list(channels))
        if i % 3 == 2:
            d.exclude("upstream", "test")
        out.append(d)
    return out


def frame(ds: list[DecisionDraft]) -> pl.LazyFrame:
    """The frame a bulk evaluation would hold for these drafts."""
    return pl.LazyFrame({
        "customer.id": [d.customer.id for d in ds],
        "customer.timezone": [d.customer.attributes.get("timezone") for d in ds],
        "_included": [d.included for d in ds],
        "_reason": [d.excluded_reason for d in ds],
        "_variant": [d.variant for d in ds],
        "_channels": [list(d.channels) for d in ds],
        "_send_at": [d.send_at for d in ds],
    }, schema=SCHEMA)


def assert_columnar_equals_apply(optimizer, ds: list[DecisionDraft], message: Message, registry, at: datetime) -> list:
    """Run both forms; return the drafts after ``apply`` (for further checks)."""
    expected = [replace(d, channels=list(d.channels), trace=list(d.trace), facts=dict(d.facts)) for d in ds]
    ctx = EvaluationContext(message, registry, at, lambda kind, draft: ())
    for d in expected:
        if d.included:
            optimizer.apply(d, ctx)
    got = optimizer.columnar(frame(ds), ColumnarContext(message, registry, at, SCHEMA, reach={})).collect()
    assert decided(got.lazy()) == decided(frame(expected))
    return expected


def decided(lazy: pl.LazyFrame) -> list[dict]:
    """The frame's rows as dicts, the channels of excluded rows left out (an excluded decision has none)."""
    no_channels = pl.lit([], pl.List(pl.String))
    return lazy.select(list(SCHEMA)).with_columns(
        pl.when(pl.col("_included")).then(pl.col("_channels")).otherwise(no_channels).alias("_channels")
    ).collect().to_dicts()
