"""The send pace that every worker shares: reservations never overlap, whoever makes them and however many at
once, so a rate holds in every second (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from service.storage import pacing


def _key() -> str:
    return f"test-{secrets.token_hex(4)}"


def test_the_first_reservation_starts_now_and_the_next_one_after_it(db_engine):
    key = _key()
    first = pacing.reserve(db_engine, key, 10, 100.0)  # 10 sends at 100/s: 0.1 s of the pace
    second = pacing.reserve(db_engine, key, 5, 100.0)
    assert first.delay == pytest.approx(0.0, abs=0.02)
    assert first.interval == pytest.approx(0.01)
    assert [round(first.offset(i), 3) for i in (0, 9)] == [round(first.delay, 3), round(first.delay + 0.09, 3)]
    # the second batch begins where the first one's slots end, less the time spent between the two calls
    assert 0.05 < second.delay <= 0.1 + 0.001
    assert second.count == 5


def test_a_pace_left_idle_starts_again_from_now_not_from_the_past(db_engine):
    key = _key()
    pacing.reserve(db_engine, key, 1, 50.0)
    time.sleep(0.1)  # longer than the 0.02 s reserved
    assert pacing.reserve(db_engine, key, 1, 50.0).delay == 0.0


def test_keys_are_paced_apart(db_engine):
    a, b = _key(), _key()
    pacing.reserve(db_engine, a, 100, 10.0)  # ten seconds of a's pace
    assert pacing.reserve(db_engine, b, 1, 10.0).delay == pytest.approx(0.0, abs=0.02)


def test_concurrent_reservations_take_disjoint_slots(db_engine):
    """Eight threads, each with its own connection, reserving at once: every slot is a different time, one
    interval apart — the pace a provider sees whichever worker sends."""
    key, rate = _key(), 200.0
    got: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        for _ in range(10):
            slots = pacing.reserve(db_engine, key, 3, rate)
            with lock:
                got.extend(slots.start + i * slots.interval for i in range(3))

    threads = [threading.Thread(target=reserve_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = sorted(got)
    assert len(times) == 240
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) == pytest.approx(1 / rate, abs=1e-5)  # no two slots closer than the rate allows (float64 of epoch seconds: ~1e-7)
    assert times[-1] - times[0] >= (240 - 1) / rate - 1e-5


def test_bad_reservations_are_refused(db_engine):
    with pytest.raises(ValueError, match="at least one"):
        pacing.reserve(db_engine, _key(), 0, 10.0)
    with pytest.raises(ValueError, match="positive"):
        pacing.reserve(db_engine, _key(), 1, 0.0)
    with pytest.raises(IndexError):
        pacing.reserve(db_engine, _key(), 2, 10.0).offset(2)

