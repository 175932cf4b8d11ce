"""A channel's rate limit inside one worker process (SQLite and PostgreSQL): every send waits for its slot of
the shared pace, so the limit holds in every second, and a slot missed by a late wake-up is replaced, not
used late. (Three worker processes against one limit: test_scale_out.py.)"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import pytest

from engine.contracts import SendRequest, SendResult
from service.storage import pacing
from service.worker import pace
from tests.service.worker.conftest import customers_csv, deliveries, upload, with_limits
from tests.service.worker.test_faults import run_message


class Clocked:
    """A transport that accepts everything and notes when each send reached it."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    async def deliver(self, request: SendRequest) -> SendResult:
        with self.lock:
            self.times.append(time.monotonic())
        return SendResult.accepted(f"p-{request.idempotency_key[:8]}")

    def busiest_second(self) -> int:
        times, best, lo = sorted(self.times), 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def test_a_rate_limited_channel_sends_at_its_rate_in_every_second(client, db_engine, org, fresh_worker):
    upload(client, org, customers_csv(45, prefix="p"))
    clocked = Clocked()
    fresh_worker.transports = {"sms": clocked}
    with_limits(fresh_worker, rates={"sms": 20.0})
    _, run_id, status = run_message(client, db_engine, org, fresh_worker)
    assert status == "sent" and len(clocked.times) == 45
    assert {d.status for d in deliveries(db_engine, run_id)} == {"sent"}
    times = sorted(clocked.times)
    assert times[-1] - times[0] >= (45 - 1) / 20 - 0.03  # 50 ms apart, the first at once
    assert clocked.busiest_second() <= 21  # slots 50 ms apart: at most 21 in any one-second window


def test_a_send_waits_for_its_slot_and_one_within_half_an_interval_goes_at_once(db_engine):
    key = f"t-{secrets.token_hex(3)}"
    slot = pace.Slot(time.monotonic() + 0.2, key, 10.0)
    start = time.monotonic()
    asyncio.run(pace.wait(db_engine, slot))
    assert 0.2 <= time.monotonic() - start < 0.3
    late = pace.Slot(time.monotonic() - 0.04, key, 10.0)  # 40 ms late: within the 50 ms grace of 10/s
    start = time.monotonic()
    asyncio.run(pace.wait(db_engine, late))
    # at once: well under the 60 ms a wait for the slot's next interval would take (33 ms seen on a busy machine)
    assert time.monotonic() - start < 0.05


def test_a_missed_slot_is_given_up_for_the_next_free_one(db_engine):
    key = f"t-{secrets.token_hex(3)}"
    pacing.reserve(db_engine, key, 5, 10.0)  # other sends hold the next half second
    missed = pace.Slot(time.monotonic() - 1.0, key, 10.0)  # woke up a second late
    start = time.monotonic()
    asyncio.run(pace.wait(db_engine, missed))
    # not sent at once (that would bunch it with the five): it waited for the slot after them
    assert time.monotonic() - start >= 0.45


def test_channels_without_a_rate_get_no_slot(db_engine, fresh_worker):
    provider = f"gw-{secrets.token_hex(3)}"
    with_limits(fresh_worker, rates={provider: 100.0, "push": 5.0}, providers={"sms": provider})
    slots = pace.slots_for(db_engine, fresh_worker.limits, [(1, "sms"), (2, "email"), (3, "sms"), (4, "push")])
    assert set(slots) == {1, 3, 4}
    assert slots[3].due - slots[1].due == pytest.approx(0.01, abs=1e-6)  # one pace: the provider's
    assert slots[1].key == f"provider:{provider}" and slots[4].key == "push" and slots[4].rate == 5.0
