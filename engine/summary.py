"""The summary of a run: counts per channel, variant and exclusion reason, and the estimated cost.

Computed by one function, :func:`summarize`, from a decision frame (both execution modes feed it: the bulk
mode its decision frames chunk by chunk, the per-recipient mode the frame of its decisions); summaries of
chunks add up with ``+``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

#: the columns :func:`summarize` reads
SUMMARY_COLUMNS = ("included", "excluded_reason", "variant", "channel")


@dataclass
class Summary:
    """Counts per channel, variant and exclusion reason, and the estimated cost of the included sends."""

    total: int = 0
    included: int = 0
    channels: Counter[str] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0

    def __add__(self, other: Summary) -> Summary:
        """The summary of two disjoint sets of decisions."""
        return Summary(self.total + other.total, self.included + other.included, self.channels + other.channels,
                       self.variants + other.variants, self.excluded + other.excluded, self.cost + other.cost)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, counts sorted by name."""
        return {
            "total": self.total,
            "included": self.included,
            "excluded": self.total - self.included,
            "channels": dict(sorted(self.channels.items())),
            "variants": dict(sorted(self.variants.items())),
            "exclusion_reasons": dict(sorted(self.excluded.items())),
            "estimated_cost": round(self.cost, 4),
        }


def summarize(decisions: pl.DataFrame | pl.LazyFrame, costs: Mapping[str, float]) -> Summary:
    """The summary of a decision frame (columns ``included``, ``excluded_reason``, ``variant``, ``channel``),
    with group-bys; ``costs`` is the cost of one send per channel name. An excluded decision without a
    reason counts as ``unknown``."""
    import polars as pl

    lazy = decisions.lazy().select(SUMMARY_COLUMNS)
    inc = pl.col("included")
    totals = lazy.select(pl.len().alias("total"), inc.sum().alias("included")).collect().row(0, named=True)
    channels = _counts(lazy.filter(inc & pl.col("channel").is_not_null()), "channel")
    variants = _counts(lazy.filter(inc & pl.col("variant").is_not_null()), "variant")
    reasons = _counts(lazy.filter(~inc).with_columns(pl.col("excluded_reason").fill_null("unknown")), "excluded_reason")
    cost = sum(n * costs.get(name, 0.0) for name, n in sorted(channels.items()))
    return Summary(totals["total"], totals["included"] or 0, Counter(channels), Counter(variants), Counter(reasons),
                   cost)


def _counts(lazy: pl.LazyFrame, col: str) -> dict[str, int]:
    import polars as pl

    df = lazy.group_by(col).agg(pl.len().alias("n")).collect()
    return dict(zip(df[col].to_list(), df["n"].to_list(), strict=True))
