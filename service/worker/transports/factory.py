"""Building a channel's transport from its settings: ``{"kind": "smtp" | "twilio" | …, …options}``.

:data:`KINDS` maps each kind to its constructor, which takes an
:class:`~service.worker.transports.config.Options` (typed reads whose errors name the field); other
modules add their kinds to it (``KINDS["smpp"] = SmppTransport``). A bad setting raises
:class:`~service.worker.transports.config.TransportConfigError` naming the field
(``transports.sms.account_sid: required``); secrets never appear in an error or a ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from engine.contracts import Transport
from service.worker.transports.config import Options, TransportConfigError
from service.worker.transports.fcm import FcmTransport
from service.worker.transports.line import LineTransport
from service.worker.transports.smpp import SmppTransport
from service.worker.transports.smtp import SmtpTransport
from service.worker.transports.twilio import TwilioTransport
from service.worker.transports.viber import ViberTransport
from service.worker.transports.wechat import WeChatTransport
from service.worker.transports.whatsapp import WhatsAppTransport

__all__ = ["KINDS", "ClosableTransport", "TransportConfigError", "build_transport"]


@runtime_checkable
class ClosableTransport(Transport, Protocol):
    """A transport that holds network resources (a connection, a client pool) until ``aclose``."""

    async def aclose(self) -> None:
        """Release the transport's connections; a later ``deliver`` opens new ones."""
        ...


def smpp(options: Options) -> ClosableTransport:
    """An SMPP 3.4 transport (``host``, ``port``, ``system_id``, ``password`` required; ``system_type``,
    ``default_sender``, ``window``, ``connect_timeout``, ``submit_timeout``, ``tls``, ``gsm7_packed``). Its
    delivery receipts go to ``on_receipt``, which the worker sets (receipts update the delivery)."""
    try:
        return SmppTransport(
            options.text("host"), options.whole("port", 2775, minimum=1, maximum=65535), options.text("system_id"),
            options.secret("password").reveal(), options.text("system_type", ""),
            default_sender=options.text("default_sender", ""), window=options.whole("window", 10, minimum=1, maximum=100),
            connect_timeout=options.number("connect_timeout", 10.0, minimum=0.1, maximum=120),
            submit_timeout=options.number("submit_timeout", 10.0, minimum=0.1, maximum=120),
            tls=options.flag("tls", False), gsm7_packed=options.flag("gsm7_packed", False))
    except ValueError as exc:
        raise TransportConfigError(options.prefix, str(exc)) from None


#: transport kind → constructor (reads its options from an ``Options``; unread options are refused after)
KINDS: dict[str, Callable[[Options], ClosableTransport]] = {
    "smtp": SmtpTransport,
    "twilio": TwilioTransport,
    "fcm": FcmTransport,
    "line": LineTransport,
    "viber": ViberTransport,
    "wechat": WeChatTransport,
    "whatsapp": WhatsAppTransport,
    "smpp": smpp,
}


def build_transport(channel: str, config: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                    prefix: str = "transports") -> ClosableTransport:
    """The transport of ``channel`` from its settings mapping (``kind`` and the kind's options; a text
    ``$env:NAME`` is read from ``env``, default the process environment).

    Raises :class:`TransportConfigError` naming the field (``transports.<channel>.<option>``) for a missing,
    mistyped or unknown option, and listing the known kinds for an unknown ``kind``.
    """
    path = f"{prefix}.{channel}"
    if not isinstance(config, Mapping):
        raise TransportConfigError(path, f"must be a mapping with a 'kind', not {type(config).__name__}")
    kind = config.get("kind")
    known = ", ".join(sorted(KINDS))
    if kind is None or kind == "":
        raise TransportConfigError(f"{path}.kind", f"required (one of: {known})")
    if not isinstance(kind, str) or kind not in KINDS:
        raise TransportConfigError(f"{path}.kind", f"unknown transport kind {kind!r} (known kinds: {known})")
    options = Options(config, path, env=env)
    transport = KINDS[kind](options)
    options.done()
    return transport
