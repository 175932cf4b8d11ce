"""The bulk plan computes ``time.*`` at each zone's planned send instant, like the per-recipient pipeline:
a local send time with recipients in several zones (DST, half-hour shifts, no DST) decides the same."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import Schedule
from engine.columnar import complete, frame_from_customers
from engine.columnar.bulk import BulkStrategy
from engine.pipeline import Pipeline
from tests.engine.test_send_instant_facts import message, people


@pytest.mark.parametrize("schedule, now", [
    (Schedule("at", datetime(2026, 7, 4, tzinfo=UTC), local_time="09:00"), datetime(2026, 7, 1, tzinfo=UTC)),
    (Schedule("at", datetime(2026, 3, 8, 5, tzinfo=UTC), local_time="02:30"), datetime(2026, 3, 1, tzinfo=UTC)),
    (Schedule("at", datetime(2026, 11, 1, 4, tzinfo=UTC), local_time="01:30", quiet_hours=("01:00", "02:00")),
     datetime(2026, 10, 1, tzinfo=UTC)),
    (Schedule("immediate", local_time="22:15"), datetime(2026, 10, 3, 10, tzinfo=UTC)),
])
def test_bulk_equals_per_recipient_with_a_local_time_in_several_zones(registry, catalogue, schedule, now):
    msg = message(schedule)
    customers = people() * 3
    want = [d.as_dict() for d in Pipeline(msg, registry, at=now, evaluator="reference").run(customers)]
    frame = complete(frame_from_customers(customers, catalogue.customer_types()), catalogue.customer_types(),
                     registry.channels)
    got = [d.as_dict() for d in BulkStrategy(msg, registry, frame, at=now, chunk=5, slow_reach=True).decisions()]
    assert got == want
    if schedule.local_time == "09:00":
        assert [d["variant"] for d in got] == ["nine"] * len(customers)
