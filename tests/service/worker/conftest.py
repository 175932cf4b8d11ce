"""Worker fixtures: DBOS launched in this process on the session's test database (SQLite file or a
PostgreSQL schema), a worker context whose transports a test may swap, and helpers to approve a message."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import select

from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS
from service.storage.db import is_sqlite, make_engine, transaction
from service.storage.tables import Delivery, OutboxMessage, Run
from service.worker import durable
from service.worker.context import Limits, WorkerContext
from service.worker.outbox import LogTransport
from tests.service.conftest import FIELDS, postgres_url
from tests.service.test_messages_support import API, insert_dry_run, ok, ready_message

#: a real send of e-mail needs signed unsubscribe links
SIGNED = {"plugins.channels.email": {"unsubscribe_secret": "org-secret-0123456789"}}
FAST = Limits(chunk_size=10, batch_size=5, max_attempts=3, backoff=0.05, backoff_cap=0.2, lease=30, poll=0.2,
              max_sleep=1.0)


@pytest.fixture(scope="session")
def worker(database_url: str, db_engine: Engine, herald) -> Iterator[WorkerContext]:
    """A worker running in this process (no scheduler thread: tests call ``durable.schedule_once``)."""
    schema = None if is_sqlite(database_url) else f"dbos_test_{secrets.token_hex(4)}"
    log = LogTransport(db_engine)
    signed = Herald.build(DEFAULT_PLUGINS, settings=SIGNED, fields_file=FIELDS, entry_points=False)
    ctx = WorkerContext(db_engine, signed, {"sms": log, "email": log}, FAST)
    durable.launch(ctx, database_url, scheduler=False, system_schema=schema)
    try:
        yield ctx
    finally:
        durable.shutdown()
        if schema is not None:
            admin = make_engine(postgres_url() or "")
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture
def fresh_worker(worker: WorkerContext) -> Iterator[WorkerContext]:
    """The session's worker with its own transports and limits restored after the test."""
    transports, limits = worker.transports, worker.limits
    yield worker
    worker.transports, worker.limits = transports, limits


def customers_csv(n: int, *, prefix: str = "c", gold_every: int = 3) -> str:
    """``n`` customers with distinct Indian mobile numbers and e-mails; every ``gold_every``-th is gold."""
    lines = ["id,tier,phone,email,timezone"]
    for i in range(n):
        tier = "gold" if i % gold_every == 0 else "silver"
        lines.append(f"{prefix}{i:04d},{tier},+9198{i:08d},{prefix}{i}@example.com,Asia/Kolkata")
    return "\n".join(lines) + "\n"


def upload(client: Any, org: Any, csv: str) -> None:
    r = client.post(f"{API}/customers/bulk", content=csv.encode(),
                    headers=org.headers(**{"Content-Type": "text/csv"}))
    assert r.status_code == 200, r.text


def approve(client: Any, db_engine: Engine, org: Any, *, schedule: dict[str, Any] | None = None,
            title: str = "Sale", edit: Any = None) -> dict[str, Any]:
    """A ready message (SMS, personalization), scheduled as told (default: immediate), submitted and
    approved; ``edit(url)`` may change it before it is submitted."""
    m = ready_message(client, db_engine, org, title=title)
    url = f"{API}/messages/{m['id']}"
    ok(client.put(f"{url}/schedule", json=schedule or {"kind": "immediate"}, headers=org.headers()))
    if edit is not None:
        edit(url)
    sub = ok(client.post(f"{url}/submit", headers=org.headers()))
    h = sub["submitted_version"]["hash"]
    run_id = insert_dry_run(db_engine, org, m["id"], h)
    return ok(client.post(f"{url}/approve", json={"version_hash": h, "dry_run_id": run_id},
                          headers=org.headers("approver")))


def send_runs(db_engine: Engine, message_id: int) -> list[Run]:
    with transaction(db_engine) as s:
        return list(s.exec(select(Run).where(Run.message_id == message_id, Run.kind == "send")
                           .order_by(Run.id)).all())  # type: ignore[arg-type]


def deliveries(db_engine: Engine, run_id: int) -> list[Delivery]:
    with transaction(db_engine) as s:
        return list(s.exec(select(Delivery).where(Delivery.run_id == run_id).order_by(Delivery.customer)).all())


def outbox(db_engine: Engine, keys: set[str]) -> list[OutboxMessage]:
    with transaction(db_engine) as s:
        rows = s.exec(select(OutboxMessage)).all()
    return [r for r in rows if r.key in keys]


def with_limits(ctx: WorkerContext, **changes: Any) -> None:
    ctx.limits = replace(ctx.limits, **changes)
