"""Scale-out on PostgreSQL: three ``herald worker`` processes share a 20,000-recipient run; one is killed with
SIGKILL mid-run and restarted under its name. Nobody is lost, no key is sent twice, the run completes."""

from __future__ import annotations

import os
import secrets

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

from service.storage.db import is_sqlite, make_engine, transaction
from service.storage.tables import Delivery, OutboxMessage, Run
from tests.service.conftest import postgres_url
from tests.service.worker.conftest import approve, customers_csv, send_runs, upload
from tests.service.worker.processes import Workers, wait_until

pytestmark = pytest.mark.slow
N = int(os.environ.get("HERALD_SCALE_OUT_N", "20000"))  # the 20,000; smaller to try a change quickly


@pytest.fixture
def workers(database_url, tmp_path):
    if is_sqlite(database_url):
        pytest.skip("worker processes share PostgreSQL (SQLite runs its worker in-process: test_send_run.py)")
    schema = f"dbos_procs_{secrets.token_hex(4)}"
    pool = Workers(database_url, tmp_path, HERALD_DBOS_SCHEMA=schema, HERALD_DEFAULT_TRANSPORT="log",
                   HERALD_CHUNK_SIZE="500")
    try:
        yield pool
    finally:
        pool.stop_all()
        admin = make_engine(postgres_url() or "")
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _count(db_engine, run_id: int, *statuses: str) -> int:
    with transaction(db_engine) as s:
        return s.exec(select(func.count()).select_from(Delivery).where(
            Delivery.run_id == run_id, col(Delivery.status).in_(statuses))).one()


def test_three_workers_and_a_sigkill_send_every_recipient_exactly_once(client, db_engine, org, workers):
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
        sent = s.exec(select(OutboxMessage.key, func.count()).where(col(OutboxMessage.key).in_(list(keys)))
                      .group_by(OutboxMessage.key)).all()
    assert dict(rows) == {"sent": N}  # nobody lost
    assert len(sent) == N and {n for _, n in sent} == {1}  # each key written to the provider once
    with transaction(db_engine) as s:
        executors = s.exec(text("SELECT count(DISTINCT executor_id) FROM "  # type: ignore[call-overload]
                                f"{workers.env['HERALD_DBOS_SCHEMA']}.workflow_status WHERE name = 'herald.batch'")).one()
    assert executors[0] >= 2  # the work was shared


def _status(db_engine, run_id: int) -> str:
    with transaction(db_engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run.status
