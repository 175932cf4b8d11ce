"""The durable part of delivery, on DBOS Transact: the only module that imports ``dbos``.

DBOS keeps its workflows and queues in Herald's own database (the SQLite file of the embedded default, or
PostgreSQL, where any number of worker processes on any number of machines share them):

* ``herald.run`` (one per send run; workflow id ``herald-run-<run>``, enqueued on ``herald-runs`` with a
  delay until the run's time, so a scheduled run survives restarts): begins the run, enqueues one
  ``herald.chunk`` per chunk of its frozen audience on ``herald-chunks`` and finishes the run when they end.
* ``herald.chunk``: decides its recipients into delivery rows (a step), then loops: the deliveries due now go
  out as ``herald.batch`` workflows on the channel's queue ``herald-send-<channel>`` (or its provider's,
  ``herald-send-provider-<name>``, shared by the channels that name it; under a rate limit the queue's limiter
  bounds batch starts across every worker process, and each send waits for its slot of the shared pace,
  :mod:`service.storage.pacing`); otherwise it sleeps durably until the next is
  due (a time-zone wave, a quiet-hours deferral, a retry's backoff).
* ``herald.batch``: claims, sends and records one batch (:func:`service.worker.sending.send_batch`).

Every workflow id is derived from the run (and chunk, pass and batch), so starting one twice finds the
first; a step that crashed runs again and the delivery rows make it safe (see :mod:`service.worker.sending`).
A process killed mid-run has its workflows recovered when it starts again with the same executor id;
queued work is taken by any live worker.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS, DBOSConfig, SetEnqueueOptions, SetWorkflowID

from service.storage.db import is_sqlite, make_engine
from service.worker import ad_exports, runs, sending
from service.worker.context import WorkerContext

log = logging.getLogger(__name__)

RUNS, CHUNKS = "herald-runs", "herald-chunks"
#: batches of one send queue a process runs at once (each holds a database connection while it claims and
#: records; the ``log`` transport writes through one connection however many sends are in flight: the pool
#: of ``assemble.start`` is sized for it)
SEND_CONCURRENCY = 4
#: every step is safe to repeat (the delivery rows make it so): a database hiccup is retried, not fatal
RETRIED: dict[str, Any] = {"retries_allowed": True, "max_attempts": 6, "interval_seconds": 0.5, "backoff_rate": 2.0}
_state: dict[str, Any] = {}


def context() -> WorkerContext:
    """The running worker's context (``RuntimeError`` when no worker runs in this process)."""
    ctx = _state.get("ctx")
    if ctx is None:
        raise RuntimeError("no Herald worker runs in this process (start one with service.worker.durable.launch)")
    return ctx


def send_queue(key: str) -> str:
    """The queue of a queue key (a channel, or ``provider:<name>`` for channels sharing a provider)."""
    return f"herald-send-{key.replace(':', '-')}"


def _queue(name: str) -> Any:
    queue = DBOS.retrieve_queue(name)
    if queue is None:
        raise RuntimeError(f"queue {name} is not registered: was the worker launched?")
    return queue


def run_workflow_id(run_id: int) -> str:
    """The workflow id of a send run (one per run, whoever starts it)."""
    return f"herald-run-{run_id}"


# -- workflows and steps ----------------------------------------------------------------------------------


@DBOS.step(name="herald.begin", **RETRIED)
def _begin(run_id: int) -> int:
    return runs.begin(context(), run_id)


@DBOS.step(name="herald.finish", **RETRIED)
def _finish(run_id: int, errors: list[str]) -> str:
    return runs.finish(context(), run_id, errors)


@DBOS.step(name="herald.exports", **RETRIED)
def _exports(run_id: int) -> list[str]:
    return ad_exports.write_run(context(), run_id)


@DBOS.step(name="herald.prepare", **RETRIED)
def _prepare(run_id: int, chunk: int) -> int:
    return runs.prepare_chunk(context(), run_id, chunk)


@DBOS.step(name="herald.plan", **RETRIED)
def _plan(run_id: int, chunk: int) -> dict[str, Any]:
    plan = sending.plan_pass(context(), run_id, chunk)
    return {"batches": plan.batches, "wait": plan.wait}


@DBOS.step(name="herald.send", **RETRIED)
def _send(run_id: int, ids: list[int], token: str) -> dict[str, int]:
    return sending.send_batch(context(), run_id, ids, token)


@DBOS.workflow(name="herald.batch")
def batch_workflow(run_id: int, ids: list[int]) -> dict[str, int]:
    """Send one batch of one channel's deliveries (claimed under this workflow's id)."""
    return _send(run_id, ids, f"{context().name}/{DBOS.workflow_id}")


@DBOS.workflow(name="herald.chunk")
def chunk_workflow(run_id: int, chunk: int) -> int:
    """Decide one chunk into delivery rows, then send them as they fall due; returns the passes it took."""
    _prepare(run_id, chunk)
    passes = 0
    while True:
        plan = _plan(run_id, chunk)
        if plan["batches"]:
            handles = []
            for k, (channel, ids) in enumerate(plan["batches"]):
                with SetWorkflowID(f"{DBOS.workflow_id}-p{passes}-b{k}"):
                    queue = _queue(send_queue(context().limits.queue_key(channel)))
                    handles.append(queue.enqueue(batch_workflow, run_id, ids))
            for h in handles:
                h.get_result()
        elif plan["wait"] is None:
            return passes
        else:
            DBOS.sleep(plan["wait"])
        passes += 1


@DBOS.workflow(name="herald.run")
def run_workflow(run_id: int) -> str:
    """Begin a send run, send its chunks (in parallel across workers) and finish it; returns its status."""
    chunks = _begin(run_id)
    queue = _queue(CHUNKS)
    handles = []
    for i in range(chunks):
        with SetWorkflowID(f"{run_workflow_id(run_id)}-c{i}"):
            handles.append(queue.enqueue(chunk_workflow, run_id, i))
    errors = []
    for i, h in enumerate(handles):
        try:
            h.get_result()
        except Exception as exc:  # a chunk that failed for good: the run ends failed, saying why
            errors.append(f"chunk {i}: {type(exc).__name__}: {exc}"[:1000])
    errors += _exports(run_id)  # the ad channels' audience files, before the run is seen as finished
    return _finish(run_id, errors)


# -- starting runs ----------------------------------------------------------------------------------------


def start_run(run_id: int, at: datetime | None = None) -> None:
    """Enqueue the run's workflow, delayed until ``at``; starting a run that exists finds it."""
    delay = max(0.0, (at - datetime.now(UTC)).total_seconds()) if at is not None else 0.0
    with SetWorkflowID(run_workflow_id(run_id)), SetEnqueueOptions(delay_seconds=delay or None):
        _queue(RUNS).enqueue(run_workflow, run_id)


def schedule_once(ctx: WorkerContext) -> list[int]:
    """One look of the scheduler: approved messages get their runs, and every run not yet started is
    enqueued (once: its workflow id is the run's). Returns the runs started."""
    runs.schedule_approved(ctx)
    started = []
    for run_id, at in runs.runs_to_start(ctx):
        start_run(run_id, at)
        runs.mark_started(ctx, run_id)
        started.append(run_id)
    return started


def wait_for_run(run_id: int, timeout: float | None = None) -> str:
    """Block until the run's workflow ends; its final status."""
    handle = DBOS.retrieve_workflow(run_workflow_id(run_id))
    if timeout is None:
        return handle.get_result()
    done = threading.Event()
    out: dict[str, Any] = {}

    def wait() -> None:
        try:
            out["status"] = handle.get_result()
        except BaseException as exc:
            out["error"] = exc
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")
    if "error" in out:
        raise out["error"]
    return out["status"]


# -- the worker's life ------------------------------------------------------------------------------------


def launch(ctx: WorkerContext, database_url: str, *, executor_id: str | None = None, scheduler: bool = True,
           system_schema: str | None = None) -> None:
    """Start DBOS on ``database_url`` (Herald's own database) in this process and work its queues with
    ``ctx``; with ``scheduler``, a thread also looks for approved messages every ``ctx.limits.poll`` seconds.

    ``executor_id`` names this worker among all of them (a restarted worker with the same id recovers the
    workflows it was running when it died)."""
    if _state.get("ctx") is not None:
        raise RuntimeError("a Herald worker already runs in this process")
    _state["ctx"] = ctx
    config: DBOSConfig = {"name": "herald", "system_database_url": database_url, "executor_id": executor_id or ctx.name,
                          "notification_listener_polling_interval_sec": 0.1, "log_level": "WARNING"}
    if is_sqlite(database_url):
        config["system_database_engine"] = make_engine(database_url)
    else:
        config["sys_db_pool_size"] = 6  # many workers share one PostgreSQL server's connections
    if system_schema:
        config["dbos_system_schema"] = system_schema
    sending.release_claims(ctx)
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(RUNS, polling_interval_sec=0.5)
    DBOS.register_queue(CHUNKS, worker_concurrency=4, polling_interval_sec=0.2)
    limits = ctx.limits
    for key in sorted({limits.queue_key(name) for name in ctx.herald.registry.channels}):
        rate = limits.rate_for(key)
        first = next(n for n in sorted(ctx.herald.registry.channels) if limits.queue_key(n) == key)
        limiter = {"limit": max(1, int(rate // limits.batch_for(first))), "period": 1.0} if rate else None
        DBOS.register_queue(send_queue(key), worker_concurrency=SEND_CONCURRENCY, limiter=limiter,  # type: ignore[arg-type]
                            polling_interval_sec=0.1)
    if scheduler:
        stop = threading.Event()
        _state["stop"] = stop
        thread = threading.Thread(target=_schedule_forever, args=(ctx, stop), name="herald-scheduler", daemon=True)
        _state["scheduler"] = thread
        thread.start()


def _schedule_forever(ctx: WorkerContext, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            schedule_once(ctx)
        except Exception:  # a bad message must not stop the scheduler for everyone else
            log.exception("herald scheduler: a look failed; trying again")
        stop.wait(ctx.limits.poll)


def shutdown() -> None:
    """Stop the scheduler, DBOS and the worker's transports (waits for nothing: unfinished work is durable)."""
    stop = _state.pop("stop", None)
    if stop is not None:
        stop.set()
        _state.pop("scheduler").join(timeout=10)
    DBOS.destroy()
    ctx = _state.pop("ctx", None)
    if ctx is not None:
        ctx.close()
