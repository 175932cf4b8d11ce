"""Sending through a channel: the part every channel's ``send`` shares (:func:`transport_send`) and the one
function delivery calls for a send (:func:`attempt`), which tells ``engine_event`` observers about it.

The engine has no network: a send goes through the transport in ``SendContext.transport`` (SMTP, SMPP and
HTTP transports come with the delivery service).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.contracts import Channel, SendContext, SendRequest, SendResult
from engine.events import EngineEvent

if TYPE_CHECKING:
    from engine.registry import Registry

log = logging.getLogger(__name__)


async def transport_send(channel: str, payload: Mapping[str, Any], ctx: SendContext, *, to: Any,
                         body: Mapping[str, Any] | None = None) -> SendResult:
    """Deliver ``body`` (default: the rendered ``payload``) to ``to`` through ``ctx.transport``.

    A permanent error, without calling anything, when no transport is configured for the channel or the
    payload names no recipient.
    """
    if ctx.transport is None:
        return SendResult.permanent(f"no transport configured for channel {channel}")
    if to is None or not str(to).strip():
        return SendResult.permanent(f"the {channel} payload names no recipient")
    request = SendRequest(channel, str(to), payload if body is None else body, ctx.idempotency_key, ctx.settings)
    return await ctx.transport.deliver(request)


async def attempt(channel: Channel, payload: Mapping[str, Any], ctx: SendContext,
                  registry: Registry | None = None) -> SendResult:
    """Send ``payload`` on ``channel`` once and return the outcome; observers see ``send_attempted`` before and
    ``send_finished`` after.

    A ``send`` that raises is reported as a transient error (the request may or may not have reached the
    provider; the idempotency key makes a retry safe); one that returns something other than a
    ``SendResult`` is a permanent error naming the channel.
    """
    detail = {"channel": channel.name, "message": ctx.message_id, "run": ctx.run_id,
              "idempotency_key": ctx.idempotency_key}
    if registry is not None and registry.has_observers:
        registry.emit(EngineEvent("send_attempted", ctx.customer_id, detail))
    try:
        result = await channel.send(payload, ctx)
    except Exception as exc:  # a plugin or transport bug must not lose the attempt
        log.exception("channel %s: send failed", channel.name)
        result = SendResult.transient(f"{channel.name}.send raised {type(exc).__name__}: {exc}")
    if not isinstance(result, SendResult):
        result = SendResult.permanent(f"{channel.name}.send returned {type(result).__name__}, not a SendResult")
    if registry is not None and registry.has_observers:
        registry.emit(EngineEvent("send_finished", ctx.customer_id, {
            **detail, "outcome": result.outcome, "provider_id": result.provider_id, "reason": result.reason,
            "retry_after": result.retry_after}))
    return result
