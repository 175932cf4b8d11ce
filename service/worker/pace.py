"""Sends of rate-limited channels (or providers) at their slots of the pace all workers share
(:mod:`service.storage.pacing`).

A batch reserves one slot per send before it sends (:func:`slots_for`); each send waits for its slot
(:func:`wait`). A send that wakes up late — its process was busy, so its timer fired after others' slots had
come — would go out together with those and break the rate in that second: a slot missed by more than half an
interval is given up and a fresh one taken, so late sends are spread out too, never bunched.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from service.storage import pacing
from service.worker.context import Limits


@dataclass(frozen=True)
class Slot:
    """When one send may go (a ``time.monotonic()`` instant), and the pace it belongs to."""

    due: float
    key: str
    rate: float

    @property
    def grace(self) -> float:
        """How late a send may still use this slot: half an interval."""
        return 0.5 / self.rate


def slots_for(engine: Engine, limits: Limits, channels: Iterable[tuple[int, str]]) -> dict[int, Slot]:
    """A slot for each (delivery id, channel) whose channel or provider has a rate; the others go at once
    (absent from the answer). One reservation per pace, the deliveries in the order given."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for did, channel in channels:
        by_key[limits.queue_key(channel)].append(did)
    slots: dict[int, Slot] = {}
    for key, ids in by_key.items():
        rate = limits.rate_for(key)
        if not rate:
            continue
        got = pacing.reserve(engine, key, len(ids), rate)
        start = time.monotonic()  # read after the database's clock: a slot is never taken early
        slots.update((did, Slot(start + got.offset(i), key, rate)) for i, did in enumerate(ids))
    return slots


async def wait(engine: Engine, slot: Slot) -> None:
    """Sleep until ``slot``; when it was missed (the wake-up came later than its grace), take a fresh slot of
    its pace and wait for that one instead."""
    due = slot.due
    while True:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if time.monotonic() - due <= slot.grace:
            return
        fresh = await asyncio.to_thread(pacing.reserve, engine, slot.key, 1, slot.rate)
        due = time.monotonic() + fresh.delay
