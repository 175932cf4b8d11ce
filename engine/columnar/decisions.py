"""Decision frames → Decision objects, in batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import polars as pl

from engine.columnar.plan import fired_lists
from engine.model import Customer, Decision, Message

BATCH = 50_000


def iter_decisions(out: pl.DataFrame, message: Message, *, base_send_at: datetime | None = None,
                   incentives: Sequence[Mapping[str, Any] | None] | None = None,
                   batch: int = BATCH) -> Iterator[Decision]:
    """Decisions of a decision frame, in row order.

    :param base_send_at: the run time; a row whose send time equals it (no local send time, not moved)
        carries this very datetime, as on the per-recipient path.
    :param incentives: each row's incentive (``None`` for none), from :meth:`engine.finish.Finish.frame`.
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
                incentive=incentives[i] if incentives is not None else None,
                send_at=send_at,
                rules_versions=versions,
                fired=MappingProxyType(fired_lists(message, row)),
            )


def customer_of(row: Mapping[str, Any]) -> Customer:
    """A Customer from an audience frame row (``customer.*`` columns, nulls left out)."""
    attrs = {k[9:]: v for k, v in row.items() if k.startswith("customer.") and k != "customer.id" and v is not None}
    return Customer(str(row["customer.id"]), attrs)
