"""What a worker process works with: the database, the engine, the transports, the send loop and its limits.

One :class:`WorkerContext` per process (``service.worker.durable`` keeps it while the worker runs); the run
steps of :mod:`service.worker.runs` and :mod:`service.worker.sending` take it as their first argument.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from engine.contracts import Transport
    from engine.model import Message
    from engine.runtime import Herald

T = TypeVar("T")


class SendLoop:
    """An asyncio event loop on a thread of its own: the transports' clients live on it, and the worker's
    threads hand it sends (``run(coro)`` waits for the result)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="herald-send-loop", daemon=True)
        self.thread.start()

    def submit(self, coro: Awaitable[T]) -> Future[T]:
        """Schedule ``coro`` on the loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return self.submit(coro).result()

    def close(self, transports: Mapping[str, Any] = {}) -> None:
        """Close the transports (``aclose``) on the loop, then stop it."""
        async def _close() -> None:
            for t in {id(t): t for t in transports.values()}.values():
                closer = getattr(t, "aclose", None)
                if closer is not None:
                    try:
                        await closer()
                    except Exception:  # a transport that fails to close must not keep the worker up
                        pass

        if self.loop.is_running():
            self.submit(_close()).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


@dataclass(frozen=True)
class Limits:
    """How a worker sends.

    * ``chunk_size``: recipients per queued chunk step.
    * ``batch_size``: sends per queued send step (of one channel).
    * ``max_attempts``: tries of one channel before it counts as failed (transient errors).
    * ``backoff`` / ``backoff_cap``: the first retry's delay and the largest, in seconds (doubled each time,
      with full jitter; a provider's ``Retry-After`` wins when longer).
    * ``lease``: seconds a claimed delivery stays with its worker before another may take it over.
    * ``rates``: channel or provider → messages per second across every worker: each send takes a slot of
      the pace the workers share (:mod:`service.storage.pacing`), and the queue's DBOS rate limit keeps
      batches from queueing up for slots.
    * ``providers``: channel → the provider it shares with other channels (``provider:`` in the transports
      file): those channels go through one queue, under the provider's rate.
    * ``poll``: seconds between two looks of the scheduler for approved messages.
    * ``public_url``: the service's address for recipients (tiny URLs need it).
    """

    chunk_size: int = 500
    batch_size: int = 50
    max_attempts: int = 5
    backoff: float = 2.0
    backoff_cap: float = 300.0
    lease: float = 120.0
    rates: Mapping[str, float] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)
    poll: float = 1.0
    #: where recipients reach the service: tiny URLs are ``{public_url}/t/{code}``
    public_url: str | None = None
    #: the longest durable sleep of a chunk waiting for its next wave: it looks again at least this often, so a
    #: cancel stops a waiting wave within it
    max_sleep: float = 30.0

    def queue_key(self, channel: str) -> str:
        """What the channel's sends queue under: its provider (``provider:<name>``) when it shares one, else
        the channel itself."""
        provider = self.providers.get(channel)
        return f"provider:{provider}" if provider else channel

    def rate_for(self, key: str) -> float | None:
        """Messages per second of a queue key (:meth:`queue_key`), when limited."""
        return self.rates.get(key[len("provider:"):] if key.startswith("provider:") else key)

    def batch_for(self, channel: str) -> int:
        """Sends per batch of ``channel``: ``batch_size``, or under a rate limit (the channel's, or its
        provider's) about a tenth of a second's worth (at least 1), so that the queue's limit on batch starts
        paces the sends evenly."""
        rate = self.rate_for(self.queue_key(channel))
        if not rate:
            return self.batch_size
        return max(1, min(self.batch_size, int(rate // 10)))


def executor_name() -> str:
    """A name for this process among the workers (host, pid and a random part)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerContext:
    """One worker process's database engine, Herald façade, transports (channel → transport) and limits."""

    engine: Engine
    herald: Herald
    transports: Mapping[str, Transport]
    limits: Limits = field(default_factory=Limits)
    loop: SendLoop = field(default_factory=SendLoop)
    name: str = field(default_factory=executor_name)
    #: engine messages of approved versions, by version id (a version never changes)
    messages: dict[int, Message] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Close the transports and stop the send loop."""
        self.loop.close(self.transports)
