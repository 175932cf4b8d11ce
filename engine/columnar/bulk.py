"""The bulk execution mode: a whole audience frame decided by the columnar plan, chunk by chunk.

Memory stays bounded by the audience frame plus one chunk's plan. Decisions become Python objects only when
asked for as objects; the summary and NDJSON come straight from the decision frames.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from engine.columnar.context import fired_column
from engine.columnar.decisions import customer_of, iter_decisions
from engine.columnar.plan import evaluate_frame
from engine.decision_frame import FIRED, frame_schema, json_text, ndjson_batches, ruleset_order
from engine.finish import Finish, run_context
from engine.model import Decision, Message
from engine.registry import Registry
from engine.run import Strategy
from engine.stores import LedgerStore
from engine.summary import Summary, summarize

CHUNK = 1_000_000  # one plan over up to 1M rows: faster than smaller chunks, peak RSS < 1 GB at 1M

#: (decision frame of the plan, each row's incentive or ``None`` when the message has none)
Chunk = tuple[pl.DataFrame, "list[Mapping[str, Any] | None] | None"]


class BulkStrategy(Strategy):
    """Decides every row of an audience frame (``customer.*`` columns) with the columnar plan."""

    mode = "bulk"

    def __init__(self, message: Message, registry: Registry, frame: pl.DataFrame, *, at: datetime,
                 preview: bool = True, history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 ledger: LedgerStore | None = None, default_tz: str = "UTC", chunk: int = CHUNK,
                 slow_reach: bool = False):
        super().__init__(message, registry)
        self.audience = frame
        self.default_tz = default_tz
        self.chunk = chunk
        self.slow_reach = slow_reach
        facts, ctx = run_context(message, registry, at=at, preview=preview, history=history, ledger=ledger,
                                 default_tz=default_tz)
        self.at = facts.at
        self.finish = Finish(message, registry, facts, ctx)

    @property
    def size(self) -> int:
        """The number of recipients."""
        return self.audience.height

    def _chunks(self) -> Iterator[Chunk]:
        """The finished decision frames, chunk by chunk; the summary is complete after the last one."""
        self.finish.prepare(self.audience.height)
        summary = Summary()
        for start in range(0, self.audience.height, self.chunk):
            part = self.audience.slice(start, self.chunk)
            out = evaluate_frame(part, self.message, self.registry, self.at, default_tz=self.default_tz,
                                 slow_reach=self.slow_reach)
            out, grants = self.finish.frame(out, lambda rows, part=part: [
                customer_of(r) for r in part[rows].rows(named=True)])
            summary = summary + summarize(out, self.costs)
            self.decided += out.height
            yield out, grants
        self.summary = summary

    def decisions(self) -> Iterator[Decision]:
        """Decision objects, in audience order."""
        for out, grants in self._chunks():
            yield from iter_decisions(out, self.message, base_send_at=self.finish.base_send_at, incentives=grants)

    def frames(self) -> Iterator[pl.DataFrame]:
        """Decision frames (:mod:`engine.decision_frame`), chunk by chunk."""
        for out, grants in self._chunks():
            yield self.public(out, grants)

    def ndjson(self, batch: int) -> Iterator[str]:
        """NDJSON written by polars from each decision frame."""
        for frame in self.frames():
            yield from ndjson_batches(frame, self.rules_versions, batch=batch)

    def count(self) -> None:
        """Decide everything for the summary only (no decision objects)."""
        for _ in self._chunks():
            pass

    def public(self, out: pl.DataFrame, grants: list[Mapping[str, Any] | None] | None) -> pl.DataFrame:
        """The plan's decision frame in the shape of :mod:`engine.decision_frame`."""
        message = self.message
        fired = []
        kinds = {rs.name: kind for kind, rs in message.rulesets.items()}
        for name in ruleset_order(message, self.registry.kinds):
            kind = kinds[name]
            rs = message.rulesets[kind]
            col = pl.col(fired_column(kind))
            if rs.hit_policy == "first":  # the index of the fired rule (-1: none) → its id as a list
                table = pl.Series([[], *([r.id] for r in rs.rules)], dtype=pl.List(pl.String))
                fired.append(pl.lit(table).gather(col + 1).alias(FIRED + name))
            else:
                fired.append(col.cast(pl.List(pl.String)).alias(FIRED + name))
        incentive = (pl.Series("incentive", [None if g is None else json_text(dict(g)) for g in grants], dtype=pl.String)
                     if grants is not None else pl.repeat(None, out.height, dtype=pl.String, eager=True))
        schema = frame_schema(ruleset_order(message, self.registry.kinds))
        return out.select(
            "customer", "included", "excluded_reason", "variant", "channel", "fallbacks",
            pl.lit(incentive).alias("incentive"), pl.lit(None, pl.String).alias("rendered"),
            pl.col("send_at").cast(schema["send_at"]), pl.lit("[]").alias("trace"), *fired,
        )
