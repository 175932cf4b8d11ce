"""Reachability per channel as Boolean expressions: the channel's ``reachable_expr`` (Boolean) or
``reachability_expr`` (status string) when it has one,
else (the documented slow path) its ``reachability(customer, message)`` called once per row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from engine.columnar.context import REACHABLE
from engine.model import Customer, Message
from engine.registry import Registry

_PREFIX = "customer."


def reach_exprs(channels: Sequence[str], message: Message, registry: Registry, schema: Mapping[str, pl.DataType],
                *, slow: bool = True) -> dict[str, pl.Expr]:
    """Channel name → "reachable" (Boolean, never null) for every registered channel in ``channels``."""
    out: dict[str, pl.Expr] = {}
    for name in channels:
        if name not in registry.channels:
            continue
        channel = registry.channel(name)
        fast: Any = getattr(channel, "reachable_expr", None)
        if fast is not None:  # the optional Boolean form: no status strings built
            out[name] = fast(message).fill_null(False)
            continue
        make: Any = getattr(channel, "reachability_expr", None)
        status: pl.Expr
        if make is not None:
            status = make(message)
        elif slow:
            status = per_row_status(channel, message, schema)
        else:
            raise ValueError(f"channel {name} has no reachability_expr")
        out[name] = status.cast(pl.String).is_in(pl.Series(REACHABLE, dtype=pl.String).implode()).fill_null(False)
    return out


def per_row_status(channel: Any, message: Message, schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """The slow path: build a Customer per row and ask ``channel.reachability`` (exact, ~µs per row)."""
    names = [n for n in schema if n.startswith(_PREFIX)]

    def statuses(s: pl.Series) -> pl.Series:
        out = []
        for row in s.to_list():
            attrs = {k[len(_PREFIX):]: v for k, v in row.items() if v is not None and k != "customer.id"}
            cid = row.get("customer.id")
            out.append(str(channel.reachability(Customer("" if cid is None else str(cid), attrs), message)))
        return pl.Series(out, dtype=pl.String)

    return pl.struct([pl.col(n) for n in names]).map_batches(statuses, return_dtype=pl.String)
