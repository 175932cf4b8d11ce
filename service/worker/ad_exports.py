"""The ``ad_export`` transport: an ad channel's "send" records the member's hashed identifiers (its rendered
payload's ``identifiers``) once per delivery key and channel; when the run finishes, :func:`write_run` writes
one CSV per channel under the export directory (see :mod:`service.storage.ad_exports` for why then)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from engine.contracts import SendRequest, SendResult
from service.storage import ad_exports
from service.storage.tables import Delivery
from service.worker.context import WorkerContext

log = logging.getLogger(__name__)


class AdExportTransport:
    """Records each member once (a retried send finds the first row and answers the same) and writes the run's
    export files into ``export_dir``."""

    def __init__(self, engine: Engine, export_dir: Path):
        self.engine = engine
        self.export_dir = Path(export_dir)

    async def deliver(self, request: SendRequest) -> SendResult:
        """Record the member (in a thread: the database call blocks) and accept it."""
        return await asyncio.to_thread(self._write, request)

    def _write(self, request: SendRequest) -> SendResult:
        def identifiers(d: Delivery) -> dict[str, Any]:
            """The hashed identifiers of the delivery's rendered payload (what ``AdChannel.render`` produced)."""
            ids = (d.payload or {}).get("identifiers") if d.channel == request.channel else None
            return dict(ids) if isinstance(ids, dict) else {}

        written = ad_exports.record_once(self.engine, request.idempotency_key, request.channel, identifiers)
        if written is None:
            return SendResult.permanent(f"{request.channel}: the delivery has no hashed e-mail or phone to export")
        return SendResult.accepted(f"export-{request.channel}-{request.idempotency_key}")

    async def aclose(self) -> None:
        """Nothing to close: the engine belongs to the worker."""


def write_run(ctx: WorkerContext, run_id: int) -> list[str]:
    """Write the export files of the run (each channel's to its transport's directory); the errors of the
    files that could not be written (the run's other files are written still)."""
    errors: list[str] = []
    for org_id, message_id, channel in ad_exports.run_channels(ctx.engine, run_id):
        transport = ctx.transports.get(channel)
        if not isinstance(transport, AdExportTransport):
            continue
        reg = ctx.herald.registry.channels.get(channel)
        platform = getattr(reg.obj, "platform", None) if reg is not None else None
        try:
            path = ad_exports.write_file(ctx.engine, transport.export_dir, run_id, org_id, message_id, channel,
                                         platform)
            log.info("run %s: wrote %s", run_id, path)
        except (OSError, ad_exports.ExportPathError) as exc:
            errors.append(f"export {channel}: {exc}"[:1000])
    return errors
