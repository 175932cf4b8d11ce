"""Scale-out on PostgreSQL: three ``herald worker`` processes share a 20,000-recipient run through a local
Twilio-style provider that fails a fifth of first attempts with 5xx and some with 429; one worker is killed with
SIGKILL mid-run and restarted under its name. Nobody is lost, no key is delivered twice, the run completes.
And a per-channel rate limit holds across three processes."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

from service.storage.db import is_sqlite, transaction
from service.storage.tables import Delivery, Run
from tests.service.conftest import postgres_url
from tests.service.worker.conftest import approve, customers_csv, send_runs, upload
from tests.service.worker.processes import wait_until, worker_pool
from tests.service.worker.provider import Provider

pytestmark = pytest.mark.slow
N = int(os.environ.get("HERALD_SCALE_OUT_N", "20000"))  # the 20,000; smaller to try a change quickly


@pytest.fixture
def provider():
    with Provider(fail_5xx=0.2, fail_429=0.02) as p:
        yield p


@pytest.fixture
def workers(database_url, tmp_path, provider):
    if is_sqlite(database_url):
        pytest.skip("worker processes share PostgreSQL (SQLite runs its worker in-process: test_send_run.py)")
    with worker_pool(database_url, tmp_path, postgres_url() or "", HERALD_DEFAULT_TRANSPORT="log",
                     HERALD_CHUNK_SIZE="500",
                     HERALD_TRANSPORTS=provider.transports_file(tmp_path / "transports.json")) as pool:
        yield pool


def _count(db_engine, run_id: int, *statuses: str) -> int:
    with transaction(db_engine) as s:
        return s.exec(select(func.count()).select_from(Delivery).where(
            Delivery.run_id == run_id, col(Delivery.status).in_(statuses))).one()


def test_three_workers_a_sigkill_and_a_failing_provider_deliver_every_recipient_exactly_once(
        client, db_engine, org, workers, provider):
    upload(client, org, customers_csv(N, prefix="s"))
    m = approve(client, db_engine, org, title="Scale")
    for name in ("w1", "w2", "w3"):
        workers.start(name)
    run = wait_until(lambda: send_runs(db_engine, m["id"]), 60, "the scheduler to create the run")[0]
    wait_until(lambda: workers.alive() and _count(db_engine, run.id, "sent") >= N // 4, 300, "a quarter sent")
    workers.kill("w2")
    workers.start("w2")  # same name: it takes back what it was doing
    wait_until(lambda: workers.alive() and _status(db_engine, run.id) in ("sent", "failed"), 600, "the run to end")
    assert _status(db_engine, run.id) == "sent"
    with transaction(db_engine) as s:
        rows = s.exec(select(Delivery.status, func.count()).where(Delivery.run_id == run.id)
                      .group_by(Delivery.status)).all()
        keys = set(s.exec(select(Delivery.key).where(Delivery.run_id == run.id)).all())
        retried = s.exec(select(func.count()).select_from(Delivery).where(
            Delivery.run_id == run.id, col(Delivery.attempts) > 1)).one()
    assert dict(rows) == {"sent": N}  # nobody lost
    assert set(provider.delivered) == keys  # each key delivered, once: the provider holds one message per key
    assert len({sid for sid, _, _ in provider.delivered.values()}) == N
    assert len({to for _, _, to in provider.delivered.values()}) == N
    assert provider.answers[503] >= N * 0.15 and provider.answers[429] > 0  # the faults happened
    assert retried >= provider.answers[503] + provider.answers[429] - provider.repeats
    # a repeat is a send the killed worker had in flight, answered by the provider's idempotency: bounded
    assert provider.repeats <= 8 * 50 * 2
    with transaction(db_engine) as s:
        executors = s.exec(text("SELECT count(DISTINCT executor_id) FROM "  # type: ignore[call-overload]
                                f"{workers.env['HERALD_DBOS_SCHEMA']}.workflow_status WHERE name = 'herald.batch'")).one()
    assert executors[0] >= 2  # the work was shared


def test_a_channel_rate_limit_holds_across_three_worker_processes(client, db_engine, org, database_url, tmp_path):
    if is_sqlite(database_url):
        pytest.skip("worker processes share PostgreSQL")
    with Provider() as provider:
        with worker_pool(database_url, tmp_path, postgres_url() or "", HERALD_CHUNK_SIZE="40",
                         HERALD_RATE_LIMITS="sms=40",
                         HERALD_TRANSPORTS=provider.transports_file(tmp_path / "transports.json")) as pool:
            upload(client, org, customers_csv(400, prefix="r"))
            m = approve(client, db_engine, org, title="Paced")
            for name in ("r1", "r2", "r3"):
                pool.start(name)
            run = wait_until(lambda: send_runs(db_engine, m["id"]), 60, "the run")[0]
            wait_until(lambda: pool.alive() and _status(db_engine, run.id) == "sent", 300, "the run to end")
        times = sorted(t for _, t, _ in provider.delivered.values())
    assert len(times) == 400
    # 40 a second across all workers: every send waits for its own slot of the pace they share, 25 ms apart
    assert times[-1] - times[0] >= (400 - 1) / 40 - 0.5  # less the arrival jitter of the first and last
    # in every one-second window: slots 25 ms apart, each used within half an interval (a later wake-up takes a
    # new slot), put at most 41 sends in a window at the workers; the rest is the loopback's arrival jitter
    assert provider.busiest_second() <= 40 * 1.1


def _status(db_engine, run_id: int) -> str:
    with transaction(db_engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run.status
