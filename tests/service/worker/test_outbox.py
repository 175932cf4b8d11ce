"""The ``log`` transport: each (key, channel) stored once however many workers send it at once, and a
moment's concurrent sends stored together (group commit), not one transaction each."""

from __future__ import annotations

import asyncio
import secrets
import threading

from sqlalchemy import event
from sqlmodel import select

from engine.contracts import SendRequest, SendResult
from service.storage.db import transaction
from service.storage.tables import OutboxMessage
from service.worker.outbox import LogTransport


def _request(key: str, channel: str = "sms", to: str = "+919800000001") -> SendRequest:
    return SendRequest(channel=channel, to=to, body={"text": f"hello {key}"}, idempotency_key=key)


def _rows(db_engine, keys: set[str]) -> list[OutboxMessage]:
    with transaction(db_engine) as s:
        return [r for r in s.exec(select(OutboxMessage)).all() if r.key in keys]


def test_two_writers_sending_the_same_keys_at_once_store_each_once(db_engine):
    keys = [f"k-{secrets.token_hex(6)}" for _ in range(30)]
    answers: list[list[str | None]] = []
    start = threading.Barrier(2)

    def writer() -> None:  # its own transport and event loop, as another worker process has
        transport = LogTransport(db_engine)

        async def send_all() -> list[str | None]:
            results = await asyncio.gather(*(transport.deliver(_request(k)) for k in keys),
                                           *(transport.deliver(_request(k)) for k in keys[:10]))  # repeated too
            assert all(r.ok for r in results)
            return [r.provider_id for r in results]

        start.wait()
        answers.append(asyncio.run(send_all()))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = _rows(db_engine, set(keys))
    assert sorted(r.key for r in rows) == sorted(keys)  # one row per key
    ids = {r.key: f"outbox-{r.id}" for r in rows}
    for got in answers:  # every answer for a key names its one row
        assert got == [ids[k] for k in keys] + [ids[k] for k in keys[:10]]


def test_the_same_key_on_another_channel_is_another_row(db_engine):
    key = f"k-{secrets.token_hex(6)}"
    transport = LogTransport(db_engine)

    async def both():
        return await asyncio.gather(transport.deliver(_request(key, "sms")),
                                    transport.deliver(_request(key, "email", "a@example.com")))

    sms, email = asyncio.run(both())
    assert sms.provider_id != email.provider_id
    assert sorted(r.channel for r in _rows(db_engine, {key})) == ["email", "sms"]


def test_concurrent_sends_are_stored_in_a_few_transactions_not_one_each(db_engine):
    keys = [f"g-{secrets.token_hex(6)}" for _ in range(50)]
    transport = LogTransport(db_engine)
    commits: list[int] = []
    me = threading.get_ident()

    def count(conn):  # the transport's commits: on threads other than this test's
        if threading.get_ident() != me:
            commits.append(1)

    async def send_all():
        return await asyncio.gather(*(transport.deliver(_request(k)) for k in keys))

    event.listen(db_engine, "commit", count)
    try:
        results = asyncio.run(send_all())
    finally:
        event.remove(db_engine, "commit", count)
    assert all(r.ok for r in results) and len({r.provider_id for r in results}) == 50
    assert len(_rows(db_engine, set(keys))) == 50
    assert 1 <= len(commits) <= 3  # the first send's, then everything that gathered meanwhile


def test_a_send_cancelled_while_it_waits_does_not_stop_the_writer(db_engine):
    keys = [f"c-{secrets.token_hex(6)}" for _ in range(20)]
    transport = LogTransport(db_engine)

    async def cancel_some():
        tasks = [asyncio.ensure_future(transport.deliver(_request(k))) for k in keys]
        await asyncio.sleep(0)  # every request is queued
        for t in tasks[10:]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        again = await asyncio.wait_for(transport.deliver(_request(keys[-1])), 10)  # the writer still answers
        return done, again

    done, again = asyncio.run(cancel_some())
    assert all(isinstance(r, SendResult) and r.ok for r in done[:10]) and again.ok
    stored = {r.key for r in _rows(db_engine, set(keys))}
    assert set(keys[:10]) <= stored and keys[-1] in stored
