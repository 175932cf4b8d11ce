"""The ``log`` transport: "sends" by writing the rendered request to the ``outbox`` table, once per
(idempotency key, channel) — what the embedded demo uses, and a way to see what would go out."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from engine.contracts import SendRequest, SendResult
from service.storage.db import transaction
from service.storage.tables import OutboxMessage


class LogTransport:
    """Writes each request to the outbox; a second request with the same key and channel finds the first
    (accepted, same provider id), so a retried send never writes twice."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def deliver(self, request: SendRequest) -> SendResult:
        """Store the request (in a thread: the database call blocks) and accept it."""
        return await asyncio.to_thread(self._write, request)

    def _write(self, request: SendRequest) -> SendResult:
        try:
            return self._insert(request)
        except IntegrityError:  # another worker wrote the same key in between: its row stands
            return self._insert(request)

    def _insert(self, request: SendRequest) -> SendResult:
        with transaction(self.engine) as s:
            found = s.exec(select(OutboxMessage.id).where(OutboxMessage.key == request.idempotency_key,
                                                          OutboxMessage.channel == request.channel)).first()
            if found is None:
                row = OutboxMessage(key=request.idempotency_key, channel=request.channel, to=request.to[:4096],
                                    body=dict(request.body))
                s.add(row)
                s.flush()
                found = row.id
        return SendResult.accepted(f"outbox-{found}")

    async def aclose(self) -> None:
        """Nothing to close: the engine belongs to the worker."""
