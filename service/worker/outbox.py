"""The ``log`` transport: "sends" by writing the rendered request to the ``outbox`` table, once per
(idempotency key, channel) — what the embedded demo uses, and a way to see what would go out.

Writes are group-committed: one writer thread at a time takes every request waiting at that moment and
stores them in one transaction, while the next requests gather for the transaction after it (a batch's
concurrent sends cost one or two commits, not one each, and one database connection, not one per send)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from engine.contracts import SendRequest, SendResult
from service.storage.db import transaction
from service.storage.tables import OutboxMessage

#: tries of one group when another writer (another process) stored some of its keys in between
TRIES = 3


class LogTransport:
    """Writes each request to the outbox; a second request with the same key and channel finds the first
    (accepted, same provider id), so a retried send never writes twice."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._waiting: list[tuple[SendRequest, Future[SendResult]]] = []
        self._writing = False

    async def deliver(self, request: SendRequest) -> SendResult:
        """Queue the request for the writer (starting it when none runs) and wait for its transaction."""
        done: Future[SendResult] = Future()
        with self._lock:
            self._waiting.append((request, done))
            start, self._writing = not self._writing, True
        if start:
            threading.Thread(target=self._drain, name="herald-outbox", daemon=True).start()
        return await asyncio.wrap_future(done)

    def _drain(self) -> None:
        """The writer: store what waits, one transaction at a time, until nothing does."""
        while True:
            with self._lock:
                waiting, self._waiting = self._waiting, []
                if not waiting:
                    self._writing = False
                    return
            # a send cancelled meanwhile is not written; the others can no longer be cancelled
            group = [(request, done) for request, done in waiting if done.set_running_or_notify_cancel()]
            if not group:
                continue
            try:
                ids = self._write([request for request, _ in group])
            except BaseException as exc:  # every request of the group gets the error; the writer goes on
                for _, done in group:
                    done.set_exception(exc)
                continue
            for request, done in group:
                done.set_result(SendResult.accepted(f"outbox-{ids[(request.idempotency_key, request.channel)]}"))

    def _write(self, requests: list[SendRequest]) -> dict[tuple[str, str], int]:
        """Store the requests whose (key, channel) is not stored yet, in one transaction; the id of each."""
        for attempt in range(TRIES):
            try:
                return self._insert(requests)
            except IntegrityError:  # another writer stored one of the keys in between: its row stands
                if attempt == TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _insert(self, requests: list[SendRequest]) -> dict[tuple[str, str], int]:
        wanted = {(r.idempotency_key, r.channel): r for r in requests}  # the first of a repeated key is stored
        with transaction(self.engine) as s:
            found: dict[tuple[str, str], int] = {}
            keys = sorted({k for k, _ in wanted})
            for i in range(0, len(keys), 500):  # bounded IN lists, on the unique index's first column
                rows = s.exec(select(OutboxMessage.key, OutboxMessage.channel, OutboxMessage.id).where(
                    col(OutboxMessage.key).in_(keys[i:i + 500]))).all()
                found.update({(k, c): oid for k, c, oid in rows if (k, c) in wanted and oid is not None})
            new = [OutboxMessage(key=k, channel=c, to=r.to[:4096], body=dict(r.body))
                   for (k, c), r in wanted.items() if (k, c) not in found]
            if new:
                s.add_all(new)
                s.flush()
                found.update({(row.key, row.channel): row.id for row in new if row.id is not None})
        return found

    async def aclose(self) -> None:
        """Nothing to close: the engine belongs to the worker (a writer still at work finishes on its own)."""
