"""The ``task`` transport: a call-task channel's "send" writes the rendered task to the ``call_task`` table (once
per delivery key and channel) and is accepted; agents then list, claim and complete tasks over the API."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from engine.contracts import SendRequest, SendResult
from service.storage import tasks


class TaskTransport:
    """Writes each request's task; a repeated request (same key and channel) finds the first task and answers
    the same, so a retried send never queues a second call."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def deliver(self, request: SendRequest) -> SendResult:
        """Store the task (in a thread: the database call blocks) and accept it."""
        return await asyncio.to_thread(self._write, request)

    def _write(self, request: SendRequest) -> SendResult:
        task_id = tasks.record_once(self.engine, request.idempotency_key, request.channel, request.body)
        if task_id is None:
            return SendResult.permanent(f"{request.channel}: no delivery with key {request.idempotency_key}")
        return SendResult.accepted(f"task-{task_id}")

    async def aclose(self) -> None:
        """Nothing to close: the engine belongs to the worker."""
