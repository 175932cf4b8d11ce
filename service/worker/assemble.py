"""A worker from the service's settings: its transports (``HERALD_TRANSPORTS``, ``HERALD_DEFAULT_TRANSPORT``),
its limits (chunk size, rate limits, scheduler poll) and its name."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from engine.contracts import Transport
from engine.runtime import Herald
from service.settings import Settings, SettingsError
from service.worker.ad_exports import AdExportTransport
from service.worker.context import Limits, WorkerContext, executor_name
from service.worker.outbox import LogTransport
from service.worker.tasks import TaskTransport

log = logging.getLogger(__name__)

MAX_TRANSPORTS_FILE = 1024 * 1024


def read_transports(path: Path) -> dict[str, dict[str, Any]]:
    """The transports file: channel → ``{kind, …options}`` (YAML or JSON); ``SettingsError`` naming the file
    and the entry for anything else."""
    try:
        if path.stat().st_size > MAX_TRANSPORTS_FILE:
            raise SettingsError(f"HERALD_TRANSPORTS: {path} is larger than 1 MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"HERALD_TRANSPORTS: cannot read {path} ({exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SettingsError(f"HERALD_TRANSPORTS: {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}"
                            f" ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in data.items()):
        raise SettingsError(f"HERALD_TRANSPORTS: {path} must map each channel to its settings "
                            "(e.g. sms: {kind: twilio, account_sid: …})")
    return data


def build_transports(engine: Engine, herald: Herald, configs: Mapping[str, Mapping[str, Any]],
                     default: str | None, export_dir: Path = Path("exports")) -> dict[str, Transport]:
    """A transport per channel: as configured (``kind: log | task | ad_export`` or a provider's), else the
    call-task table for every ``task`` channel, the audience files in ``export_dir`` for every ``ad`` channel,
    and the default (``log``) for every direct channel."""
    unknown = sorted(set(configs) - set(herald.registry.channels))
    if unknown:
        raise SettingsError(f"HERALD_TRANSPORTS: no channel named {', '.join(unknown)} "
                            f"(channels: {', '.join(sorted(herald.registry.channels))})")
    log, tasks, ads = LogTransport(engine), TaskTransport(engine), AdExportTransport(engine, export_dir)
    builtin: dict[str, Transport] = {"log": log, "task": tasks, "ad_export": ads}
    out: dict[str, Transport] = {}
    for channel, config in configs.items():
        config = {k: v for k, v in config.items() if k != "provider"}  # a queue grouping, not a transport option
        kind = config.get("kind")
        if isinstance(kind, str) and kind in builtin:
            out[channel] = builtin[kind]
            continue
        from service.worker.transports.factory import TransportConfigError, build_transport

        try:
            out[channel] = build_transport(channel, config)
        except TransportConfigError as exc:
            raise SettingsError(f"HERALD_TRANSPORTS: {exc}") from None
        if hasattr(out[channel], "on_receipt"):  # SMPP: receipts arrive on the session
            out[channel].on_receipt = SmppReceipts(engine)  # type: ignore[attr-defined]
    for name, reg in herald.registry.channels.items():
        if name in out:
            continue
        if reg.obj.kind == "task":
            out[name] = tasks
        elif reg.obj.kind == "ad":
            out[name] = ads
        elif default == "log" and reg.obj.kind == "direct":
            out[name] = log
    return out


class SmppReceipts:
    """Stores the delivery receipts an SMSC sends on the SMPP session, as the receipt webhooks do: each once,
    moving its delivery forward (``delivered``, ``failed`` …) in the org that sent it.

    A receipt can come back before the worker has recorded the message id the SMSC gave (a batch records its
    outcomes when its last send is answered): a receipt no delivery matches yet is tried again after each of
    ``retry_delays`` seconds, then dropped with a warning (the SMSC was answered at once, so it will not send it
    again; a worker that stops meanwhile loses it)."""

    #: SMPP final states → delivery statuses
    STATUSES = {"delivered": "delivered", "failed": "failed", "expired": "failed", "rejected": "failed"}

    def __init__(self, engine: Engine, retry_delays: Sequence[float] = (1, 2, 4, 8, 15, 30, 60, 120)):
        self.engine = engine
        self.retry_delays = tuple(retry_delays)

    async def __call__(self, receipt: Any) -> None:
        """Apply one receipt (in a thread: the database call blocks), again later while no delivery matches it;
        a state that is not final moves nothing."""
        import asyncio

        for delay in (0, *self.retry_delays):
            await asyncio.sleep(delay)
            if not (await asyncio.to_thread(self.apply, receipt)).get("unmatched"):
                return
        log.warning("smpp: a %s receipt for %s matched no delivery after %s s; dropped", receipt.status,
                    receipt.provider_id, sum(self.retry_delays))

    def apply(self, receipt: Any) -> dict[str, int]:
        """Apply one receipt; the counts of :func:`service.storage.receipts.apply_receipts` (``unmatched`` 1 when
        no delivery has its message id)."""
        from service.storage.db import transaction
        from service.storage.receipts import Receipt, apply_receipts, orgs_by_provider_id

        status = self.STATUSES.get(receipt.status)
        if status is None:
            return {}
        event = Receipt(f"smpp:{receipt.provider_id}:{receipt.message_id}:{receipt.status}", receipt.provider_id,
                        status, receipt.done_at, receipt.error_code)
        with transaction(self.engine) as s:
            orgs = orgs_by_provider_id(s, [receipt.provider_id]).get(receipt.provider_id, set())
            if not orgs:
                return {"unmatched": 1}
            return apply_receipts(s, "smpp", [(org, event) for org in sorted(orgs)])


def providers_of(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Channel → provider, for the channels of the transports file that name one (``provider: twilio-main``):
    they share one queue and one rate limit. ``SettingsError`` for a name that is not a plain identifier."""
    out: dict[str, str] = {}
    for channel, config in configs.items():
        name = config.get("provider")
        if name is None:
            continue
        if not isinstance(name, str) or not name.replace("-", "_").replace("_", "a").isalnum() or len(name) > 50:
            raise SettingsError(f"HERALD_TRANSPORTS: transports.{channel}.provider: a name of letters, digits, - "
                                f"and _, not {name!r}")
        out[channel] = name
    return out


def build_worker(settings: Settings, herald: Herald, engine: Engine) -> WorkerContext:
    """The worker context of this process, from ``settings``."""
    configs = read_transports(settings.transports_file) if settings.transports_file else {}
    transports = build_transports(engine, herald, configs, settings.default_transport, settings.export_dir)
    providers = providers_of(configs)
    unknown = sorted(set(settings.rate_limits) - set(herald.registry.channels) - set(providers.values()))
    if unknown:
        raise SettingsError(f"HERALD_RATE_LIMITS: {', '.join(unknown)} is neither a channel nor a provider of the "
                            "transports file")
    limits = Limits(chunk_size=settings.chunk_size, rates=dict(settings.rate_limits), poll=settings.scheduler_poll,
                    public_url=settings.public_url, providers=providers)
    return WorkerContext(engine, herald, transports, limits, name=settings.worker_id or executor_name())


def start(settings: Settings, *, scheduler: bool = True) -> WorkerContext:
    """Start a worker in this process on ``settings`` (DBOS on Herald's database; the scheduler thread
    with ``scheduler``); :func:`stop` ends it."""
    from service.main import build_herald
    from service.storage.db import make_engine
    from service.worker import durable

    # many workers share the server: 6 kept, up to 16 at a peak — the chunk steps (4, each with a ledger
    # connection while it reserves), the batch steps of each send queue (4 a queue, one connection each while
    # they claim and record), the log transport's one writer, the scheduler; DBOS has its own 6
    engine = make_engine(settings.database_url, pool_size=6, max_overflow=10)
    ctx = build_worker(settings, build_herald(settings), engine)
    durable.launch(ctx, settings.database_url, executor_id=ctx.name, scheduler=scheduler,
                   system_schema=settings.dbos_schema)
    return ctx


def stop(ctx: WorkerContext) -> None:
    """Stop the worker this process started (its unfinished work stays queued for the next worker)."""
    from service.worker import durable

    durable.shutdown()
    ctx.engine.dispose()
