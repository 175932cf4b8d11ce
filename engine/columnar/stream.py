"""Bulk evaluation of a whole audience frame in chunks: decisions streamed out in batches, and the summary.

Memory stays bounded by the audience frame plus one chunk's plan; decisions are materialised as Python
objects one batch at a time, and not at all when only the summary is wanted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from engine.columnar.decisions import customer_of, iter_decisions, summary_counts
from engine.columnar.plan import evaluate_frame
from engine.model import Decision

if TYPE_CHECKING:
    from engine.pipeline import Pipeline

CHUNK = 1_000_000  # one plan over up to 1M rows: faster than smaller chunks, peak RSS < 1 GB at 1M


def run_frame(pipeline: Pipeline, frame: pl.DataFrame, *, decisions: bool = True, chunk: int = CHUNK,
              slow_reach: bool = False) -> Iterator[Decision]:
    """Decide every row of ``frame`` with the bulk plan, chunk by chunk, adding to ``pipeline.summary``.

    Yields the decisions (incentives reserved as the per-recipient path does, in row order) unless
    ``decisions`` is false, in which case only the summary is computed (iterate the result to run it; a
    message with an incentive still reserves row by row, since a cap may exclude recipients).
    """
    from engine.pipeline import Summary

    message = pipeline.message
    pipeline.prepare(frame.height)
    for start in range(0, max(frame.height, 1) if frame.height else 0, chunk):
        part = frame.slice(start, chunk)
        out = evaluate_frame(part, message, pipeline.registry, pipeline.facts.at, default_tz=pipeline.default_tz,
                             slow_reach=slow_reach)
        pipeline.summary = Summary.from_counts(summary_counts(out, pipeline.costs), pipeline.summary)
        if not decisions and message.incentive is None:
            continue
        reserve = None
        if message.incentive is not None:
            rows: list[Mapping[str, Any]] = part.rows(named=True)

            def reserve(i: int, send_at: datetime, rows: list[Mapping[str, Any]] = rows) -> Mapping[str, Any]:
                return pipeline.reserve_incentive(customer_of(rows[i]), send_at)

        made = iter_decisions(out, message, base_send_at=pipeline.base_send_at, reserve=reserve,
                              unavailable=pipeline.incentive_unavailable)
        if decisions:
            yield from made
        else:
            for _ in made:
                pass
