"""Send pacing shared by every worker: a rate-limited channel or provider has one row (``send_pace``) holding
the next free send time; a worker about to send ``count`` messages moves it on by ``count / rate`` in one
atomic statement and sends them that far apart from the time it got.

The times are the database's clock (every worker reads the same one, so machines whose clocks disagree still
share one pace), and the statement is an upsert on the row's primary key: two workers reserving at once are
serialised by the row lock (PostgreSQL) or the write lock (SQLite), so no two reservations overlap and the
sends of all workers together never exceed the rate in any one-second window.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

#: seconds since the epoch, by the database's clock
_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@dataclass(frozen=True)
class Slots:
    """``count`` send times ``interval`` seconds apart, the first at ``start`` (seconds since the epoch by the
    database's clock), ``delay`` seconds after the reservation was made."""

    start: float
    delay: float
    interval: float
    count: int

    def offset(self, i: int) -> float:
        """Seconds from the reservation to the ``i``-th send (0-based)."""
        if not 0 <= i < self.count:
            raise IndexError(f"slot {i} of {self.count}")
        return self.delay + i * self.interval


def reserve(engine: Engine, key: str, count: int, rate: float) -> Slots:
    """Reserve ``count`` consecutive send times of ``key`` at ``rate`` messages per second for every worker
    together: the first is the later of now and the key's next free time."""
    if count < 1:
        raise ValueError("reserve at least one send")
    if not rate > 0:
        raise ValueError(f"a rate must be positive, not {rate!r}")
    now = _NOW[engine.dialect.name]
    span = count / rate
    statement = text(
        f"INSERT INTO send_pace (key, next_at) VALUES (:key, {now} + :span) "
        f"ON CONFLICT (key) DO UPDATE SET next_at = "
        f"{'GREATEST' if engine.dialect.name == 'postgresql' else 'max'}(send_pace.next_at, {now}) + :span "
        f"RETURNING next_at, {now}")
    with engine.begin() as conn:
        next_at, at = conn.execute(statement, {"key": key, "span": span}).one()
    start = float(next_at) - span
    return Slots(start=start, delay=max(0.0, start - float(at)), interval=1.0 / rate, count=count)
