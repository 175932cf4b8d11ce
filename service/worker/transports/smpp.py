"""SMPP 3.4: SMS through an SMSC, on the ``smpp34`` client (a Rust/tokio session behind an asyncio bridge).

:class:`SmppTransport` binds as a transceiver on the first :meth:`~SmppTransport.deliver` (on the running
event loop) and keeps the bind: submit_sm for every part of a message, delivery receipts (deliver_sm) handed
to ``on_receipt`` as :class:`Receipt`, a lost session rebound on the next send.

What the SMPP side looks like:

* text: ``data_coding`` 0 (the GSM 03.38 default alphabet, one septet per octet, or packed when the SMSC wants
  ``gsm7_packed``; ``^{}[]~|\\€`` and form feed are escape pairs) or 8 (UCS-2 big-endian, which is UTF-16:
  an emoji is a surrogate pair). The encoding is the payload's (``plugins.channels.sms`` ``render``), or
  UCS-2 when the text does not fit the GSM alphabet.
* a text longer than one part (160 septets / 70 UTF-16 units) goes in parts of 153 / 67 with the
  concatenation UDH (``esm_class`` 0x40, ``05 00 03 ref total seq``), never splitting an escape pair or a
  surrogate pair, one reference number per message.
* ``registered_delivery`` 1: the SMSC sends a receipt for every part.
* addresses: the recipient in E.164 (``+`` stripped, TON 1 / NPI 1); the sender decides the source TON/NPI:
  alphanumeric → 5/0, a 3–8 digit short code → 3/0, an international number → 1/1 (``source_ton`` /
  ``source_npi`` override them).

Outcomes: ESME_ROK for every part → accepted, the provider id the first part's message_id (every part's id is
kept: receipts for later parts are reported under it, see :meth:`SmppTransport.part_ids`); throttling
(0x58), a full queue (0x14), a system error (0x08), a wrong bind state (0x04), a timeout or a lost session →
transient, and the next send binds again; an invalid destination (0x0B) → permanent and unreachable; any
other status → permanent, naming it in words and hex.

Concurrency: one bind per transport with a window: up to ``window`` submit_sm in flight at once (the parts
of one message go one after the other). Keep-alive: smpp34 sends enquire_link every 30 s and answers the
SMSC's; its timers are not adjustable from Python, so ``submit_timeout`` bounds a send here.

Retries: a retried request (same idempotency key) that was accepted before is answered from memory without
sending again; one that failed after some parts were accepted resumes at the first part not accepted, with
the same reference number, so the handset can still join the parts. Both memories are bounded and
per-process: SMPP itself has no idempotency, so a send that timed out may have reached the SMSC.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import smpp34

from engine.contracts import SendRequest, SendResult

log = logging.getLogger(__name__)

__all__ = [
    "COMMAND_STATUS",
    "Receipt",
    "SmppTransport",
    "encode_gsm7",
    "gsm7_encodable",
    "pack_septets",
    "parse_receipt_text",
    "split_message",
    "status_text",
]

# --- GSM 03.38 -----------------------------------------------------------------------------------------------

_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_ESC = 0x1B
_GSM7_CODE = {c: i for i, c in enumerate(_GSM7_BASIC) if i != _ESC}
#: the extension table: each of these is sent as ESC followed by its code (two septets)
_GSM7_EXTENDED = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                  "|": 0x40, "€": 0x65}

_SINGLE = {0: 160, 8: 70}  # units one unsplit message holds: septets (data_coding 0), UTF-16 units (8)
_PART = {0: 153, 8: 67}  # units per part once the 6-octet concatenation header takes its room
_UDH_LENGTH = 6
_ESM_UDHI = 0x40


def gsm7_encodable(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM 03.38 default alphabet or its extension table."""
    return all(c in _GSM7_CODE or c in _GSM7_EXTENDED for c in text)


def _gsm7_chars(text: str) -> list[bytes]:
    """One septet string per character (two septets for an escape pair); ``ValueError`` outside the alphabet."""
    out = []
    for c in text:
        code = _GSM7_CODE.get(c)
        if code is not None:
            out.append(bytes((code,)))
        elif c in _GSM7_EXTENDED:
            out.append(bytes((_ESC, _GSM7_EXTENDED[c])))
        else:
            raise ValueError(f"{c!r} (U+{ord(c):04X}) is not in the GSM 03.38 alphabet")
    return out


def encode_gsm7(text: str) -> bytes:
    """``text`` as GSM 03.38 septets, one per octet (escape pairs for the extension table)."""
    return b"".join(_gsm7_chars(text))


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Septets packed 8 to 7 octets (GSM 03.38 §6.1.2.1), after ``fill_bits`` zero bits (the alignment after a
    user data header). Seven spare bits at the end are filled with CR, so that no ``@`` appears there."""
    value, bits = 0, fill_bits
    for s in septets:
        value |= (s & 0x7F) << bits
        bits += 7
    if bits % 8 == 1:
        value |= 0x0D << bits
        bits += 7
    return value.to_bytes((bits + 7) // 8, "little")


def _ucs2_chars(text: str) -> list[bytes]:
    """UTF-16BE per character: two octets, or four for a surrogate pair (kept together)."""
    return [c.encode("utf-16-be") for c in text]


def split_message(text: str, data_coding: int) -> list[bytes]:
    """The encoded parts of ``text``: one when it fits a single message, else parts of 153 septets / 67 UTF-16
    units filled in order, where an escape pair or surrogate pair that does not fit starts the next part.
    (The same counting as ``plugins.channels.sms.segments``.) Parts are unpacked septets or UTF-16BE."""
    chars = _gsm7_chars(text) if data_coding == 0 else _ucs2_chars(text)
    size = 1 if data_coding == 0 else 2  # octets per unit
    total = sum(len(c) for c in chars) // size
    if total <= _SINGLE[data_coding]:
        return [b"".join(chars)]
    limit = _PART[data_coding] * size
    parts: list[bytes] = []
    current = bytearray()
    for c in chars:
        if len(current) + len(c) > limit:
            parts.append(bytes(current))
            current = bytearray()
        current += c
    parts.append(bytes(current))
    return parts


# --- command_status --------------------------------------------------------------------------------------------

#: SMPP 3.4 §5.1.3: command_status → (name, meaning)
COMMAND_STATUS: dict[int, tuple[str, str]] = {
    0x00: ("ESME_ROK", "no error"),
    0x01: ("ESME_RINVMSGLEN", "message length is invalid"),
    0x02: ("ESME_RINVCMDLEN", "command length is invalid"),
    0x03: ("ESME_RINVCMDID", "invalid command id"),
    0x04: ("ESME_RINVBNDSTS", "incorrect bind status for the command"),
    0x05: ("ESME_RALYBND", "already bound"),
    0x06: ("ESME_RINVPRTFLG", "invalid priority flag"),
    0x07: ("ESME_RINVREGDLVFLG", "invalid registered delivery flag"),
    0x08: ("ESME_RSYSERR", "system error"),
    0x0A: ("ESME_RINVSRCADR", "invalid source address"),
    0x0B: ("ESME_RINVDSTADR", "invalid destination address"),
    0x0C: ("ESME_RINVMSGID", "message id is invalid"),
    0x0D: ("ESME_RBINDFAIL", "bind failed"),
    0x0E: ("ESME_RINVPASWD", "invalid password"),
    0x0F: ("ESME_RINVSYSID", "invalid system id"),
    0x11: ("ESME_RCANCELFAIL", "cancel_sm failed"),
    0x13: ("ESME_RREPLACEFAIL", "replace_sm failed"),
    0x14: ("ESME_RMSGQFUL", "message queue full"),
    0x15: ("ESME_RINVSERTYP", "invalid service type"),
    0x33: ("ESME_RINVNUMDESTS", "invalid number of destinations"),
    0x34: ("ESME_RINVDLNAME", "invalid distribution list name"),
    0x40: ("ESME_RINVDESTFLAG", "invalid destination flag"),
    0x42: ("ESME_RINVSUBREP", "invalid submit-with-replace request"),
    0x43: ("ESME_RINVESMCLASS", "invalid esm_class"),
    0x44: ("ESME_RCNTSUBDL", "cannot submit to a distribution list"),
    0x45: ("ESME_RSUBMITFAIL", "submit failed"),
    0x48: ("ESME_RINVSRCTON", "invalid source address TON"),
    0x49: ("ESME_RINVSRCNPI", "invalid source address NPI"),
    0x50: ("ESME_RINVDSTTON", "invalid destination address TON"),
    0x51: ("ESME_RINVDSTNPI", "invalid destination address NPI"),
    0x53: ("ESME_RINVSYSTYP", "invalid system type"),
    0x54: ("ESME_RINVREPFLAG", "invalid replace_if_present flag"),
    0x55: ("ESME_RINVNUMMSGS", "invalid number of messages"),
    0x58: ("ESME_RTHROTTLED", "throttled: the message rate limit was exceeded"),
    0x61: ("ESME_RINVSCHED", "invalid scheduled delivery time"),
    0x62: ("ESME_RINVEXPIRY", "invalid validity period"),
    0x63: ("ESME_RINVDFTMSGID", "predefined message invalid or not found"),
    0x64: ("ESME_RX_T_APPN", "receiver temporary application error"),
    0x65: ("ESME_RX_P_APPN", "receiver permanent application error"),
    0x66: ("ESME_RX_R_APPN", "receiver reject message error"),
    0x67: ("ESME_RQUERYFAIL", "query_sm failed"),
    0xC0: ("ESME_RINVOPTPARSTREAM", "error in the optional part of the PDU"),
    0xC1: ("ESME_ROPTPARNOTALLWD", "optional parameter not allowed"),
    0xC2: ("ESME_RINVPARLEN", "invalid parameter length"),
    0xC3: ("ESME_RMISSINGOPTPARAM", "expected optional parameter missing"),
    0xC4: ("ESME_RINVOPTPARAMVAL", "invalid optional parameter value"),
    0xFE: ("ESME_RDELIVERYFAILURE", "delivery failure"),
    0xFF: ("ESME_RUNKNOWNERR", "unknown error"),
}
_RETRYABLE = {0x04, 0x08, 0x14, 0x58}  # wrong bind state, system error, queue full, throttled
_REBIND = {0x04, 0x08}  # … after which the session is not trusted
_THROTTLED = 0x58
_INVALID_DESTINATION = 0x0B
_STATUS_IN_ERROR = re.compile(r"\(0x([0-9A-Fa-f]{1,8})\)")


def status_text(status: int) -> str:
    """A command_status in words and hex: ``ESME_RINVDSTADR (0x0000000B): invalid destination address``."""
    name, meaning = COMMAND_STATUS.get(status, ("", ""))
    if not name:
        name, meaning = (("vendor-specific", "an SMSC vendor's own error") if 0x400 <= status <= 0x4FF
                         else ("unknown status", "not defined by SMPP 3.4"))
    return f"{name} (0x{status:08X}): {meaning}"


# --- receipts --------------------------------------------------------------------------------------------------

ReceiptStatus = Literal["delivered", "failed", "expired", "rejected", "unknown"]


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt from the SMSC.

    ``provider_id`` is the id :meth:`SmppTransport.deliver` answered for the message (its first part's
    message_id); ``message_id`` is the id the SMSC receipted (a later part's own id for a part ``part`` of
    ``parts`` > 1; a receipt for an id this process did not send is reported as part 1 of 1 under its own id).
    ``status`` is the final state in plain words, ``stat`` the SMSC's own word (``DELIVRD`` …),
    ``error_code`` its error (``err:`` or the network_error_code TLV; None when zero), ``done_at`` when the
    state was reached (the SMSC's ``done date``, read in the transport's ``receipt_tz``)."""

    provider_id: str
    status: ReceiptStatus
    error_code: str | None = None
    done_at: datetime | None = None
    message_id: str = ""
    stat: str | None = None
    part: int = 1
    parts: int = 1


#: the receipt text's stat word → status
_STAT: dict[str, ReceiptStatus] = {
    "DELIVRD": "delivered", "DELIVERED": "delivered",
    "UNDELIV": "failed", "UNDELIVERABLE": "failed", "DELETED": "failed",
    "EXPIRED": "expired",
    "REJECTD": "rejected", "REJECTED": "rejected",
    "ACCEPTD": "unknown", "ENROUTE": "unknown", "UNKNOWN": "unknown",
}
#: the message_state TLV (SMPP 3.4 §5.2.28) → (stat word, status)
_MESSAGE_STATE: dict[int, tuple[str, ReceiptStatus]] = {
    1: ("ENROUTE", "unknown"), 2: ("DELIVRD", "delivered"), 3: ("EXPIRED", "expired"),
    4: ("DELETED", "failed"), 5: ("UNDELIV", "failed"), 6: ("ACCEPTD", "unknown"),
    7: ("UNKNOWN", "unknown"), 8: ("REJECTD", "rejected"),
}
_RECEIPT_FIELD = re.compile(r"\b(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:\s*", re.I)
_RECEIPT_BITS = 0x3C  # esm_class bits 5–2: the message type of a deliver_sm
_RECEIPT_TYPES = {0x04, 0x20}  # SMSC delivery receipt, intermediate delivery notification
_TLV_RECEIPTED_MESSAGE_ID = 0x001E
_TLV_MESSAGE_STATE = 0x0427
_TLV_NETWORK_ERROR_CODE = 0x0423
_MAX_RECEIPT_TEXT = 1024
_MAX_MESSAGE_ID = 65  # octets of an SMPP message_id, NUL included


def parse_receipt_text(text: str) -> dict[str, str]:
    """The fields of a receipt's text (``id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…
    text:…``), keys lower case; ``text`` is everything after ``text:``. Missing fields are absent."""
    text = text[:_MAX_RECEIPT_TEXT]
    out: dict[str, str] = {}
    matches = list(_RECEIPT_FIELD.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        if key in out:
            continue
        if key == "text":
            out[key] = text[m.end():]
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end():end].strip()
        out[key] = value.split()[0] if value and key not in ("submit date", "done date") else value
    return out


def _receipt_time(value: str | None, tz: tzinfo) -> datetime | None:
    """``YYMMDDhhmm`` or ``YYMMDDhhmmss`` in ``tz``; None when absent or malformed."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M").replace(tzinfo=tz)
    except ValueError:
        return None


# --- addresses -------------------------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")
_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 .&_-]{1,11}")


class _Refused(Exception):
    """A request that cannot be sent as it is (a permanent error, before anything went out)."""

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


def _destination(to: str) -> tuple[str, int, int]:
    """(address, TON, NPI) of the recipient: E.164 → international/ISDN, bare digits → unknown/ISDN."""
    to = to.strip()
    digits = to[1:] if to.startswith("+") else to
    if not _DIGITS.fullmatch(digits) or not digits.isascii() or len(digits) > 20:
        raise _Refused(f"recipient {to!r} is not a phone number (E.164 expected)", unreachable=True)
    return digits, (1 if to.startswith("+") else 0), 1


def _source(sender: str, ton: int | None, npi: int | None) -> tuple[str, int, int]:
    """(address, TON, NPI) of the sender: alphanumeric → 5/0, short code → 3/0, international → 1/1."""
    sender = sender.strip()
    if not sender:
        return "", ton or 0, npi or 0  # the SMSC's default originator
    digits = sender[1:] if sender.startswith("+") else sender
    if _DIGITS.fullmatch(digits) and digits.isascii():
        if sender.startswith("+") or len(digits) > 8:
            if len(digits) > 20:
                raise _Refused(f"sender {sender!r}: a number has at most 20 digits")
            default = (1, 1)
        else:
            default = (3, 0)
        return digits, default[0] if ton is None else ton, default[1] if npi is None else npi
    if not _ALPHANUMERIC_SENDER.fullmatch(sender) or not sender.isascii():
        raise _Refused(f"sender {sender!r}: an alphanumeric sender id is 1–11 ASCII letters, digits, spaces or .&_-")
    return sender, 5 if ton is None else ton, 0 if npi is None else npi


# --- the transport -------------------------------------------------------------------------------------------

OnReceipt = Callable[[Receipt], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class _Part:
    """One submit_sm: its short_message, esm_class and data_coding."""

    short_message: bytes
    esm_class: int
    data_coding: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one request sends: the addresses, the data_coding and the encoded parts (without headers)."""

    destination: tuple[str, int, int]
    source: tuple[str, int, int]
    data_coding: int
    chunks: tuple[bytes, ...]
    tlvs: tuple[tuple[int, bytes], ...] = ()


@dataclass(slots=True)
class _Progress:
    """The parts of a multipart request the SMSC accepted so far (resumed by a retry with the same key)."""

    signature: _Plan
    reference: int
    message_ids: list[str]


class _Session:
    """One bind: the smpp34 client and session handle, and the task reading deliver_sm from it."""

    def __init__(self, client: Any, smsc: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.smsc = smsc
        self.loop = loop
        self.alive = True
        self.reader: asyncio.Task[None] | None = None

    async def close(self, unbind: bool) -> None:
        """End the bind (an ``unbind`` first when asked and still alive), and stop reading."""
        self.alive = False
        try:
            if unbind:
                await asyncio.wait_for(self.smsc.unbind(), 5)
            else:
                await self.client.stop()
        except Exception as exc:  # the session is going away either way
            log.debug("smpp: closing the session: %s", exc)
        reader = self.reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done() \
                and reader.get_loop() is asyncio.get_running_loop():  # a closed loop's task is gone already
            reader.cancel()


class SmppTransport:
    """Delivers SMS requests (``plugins.channels.sms`` payloads) to an SMSC over SMPP 3.4 (see the module).

    :param host, port: the SMSC.
    :param system_id, password, system_type: the bind credentials (at most 15, 8 and 12 characters).
    :param on_receipt: called with every delivery receipt (:class:`Receipt`); may be a coroutine function.
        The receipt's deliver_sm_resp is sent by smpp34 as soon as it arrives, before the callback runs.
    :param source_ton, source_npi: the sender's TON/NPI (default: from the sender, see :func:`_source`).
    :param default_sender: the sender when the payload names none (``""``: the SMSC's default).
    :param service_type: submit_sm service_type (at most 5 characters).
    :param registered_delivery: 1 asks for a receipt for every part (0: none).
    :param gsm7_packed: send GSM-7 packed 8 septets in 7 octets (the default is one septet per octet).
    :param window: submit_sm in flight at once on the bind.
    :param connect_timeout, submit_timeout: seconds for the bind, and for one submit_sm_resp.
    :param throttle_retry_after: the ``retry_after`` of a throttled send, seconds.
    :param max_parts: the most parts one message may take (at most 255, the UDH's limit).
    :param receipt_tz: the zone the SMSC writes receipt dates in.
    :param tls: bind over TLS.
    :param dlt_tags: India DLT: the TLV tags for the principal entity id and the template id (most Indian
        SMSCs use ``(0x1400, 0x1401)``), sent with every part when the payload has ``dlt`` ids; None: not sent.
    :param memory: how many accepted and part-sent requests (and 10× as many part ids) are remembered.
    """

    def __init__(self, host: str, port: int, system_id: str, password: str, system_type: str = "", *,
                 on_receipt: OnReceipt | None = None, source_ton: int | None = None,
                 source_npi: int | None = None, default_sender: str = "", service_type: str = "",
                 registered_delivery: int = 1, gsm7_packed: bool = False, window: int = 10,
                 connect_timeout: float = 10.0, submit_timeout: float = 10.0, throttle_retry_after: float = 1.0,
                 max_parts: int = 20, receipt_tz: tzinfo = UTC, tls: bool = False,
                 dlt_tags: tuple[int, int] | None = None, memory: int = 10_000) -> None:
        for label, value, most in (("system_id", system_id, 15), ("password", password, 8),
                                   ("system_type", system_type, 12), ("service_type", service_type, 5)):
            if len(value.encode()) > most or "\0" in value:
                raise ValueError(f"SMPP {label} is at most {most} octets without NUL, got {value!r}")
        if not 1 <= max_parts <= 255:
            raise ValueError(f"max_parts is 1–255 (the concatenation header counts parts in one octet), got {max_parts}")
        if window < 1 or connect_timeout <= 0 or submit_timeout <= 0 or memory < 1:
            raise ValueError("window and memory are ≥ 1 and timeouts > 0 seconds")
        for label, v in (("source_ton", source_ton), ("source_npi", source_npi)):
            if v is not None and not 0 <= v <= 255:
                raise ValueError(f"{label} is one octet, got {v}")
        self.host, self.port = host, port
        self.system_id, self._password, self.system_type = system_id, password, system_type
        self.on_receipt = on_receipt
        self.source_ton, self.source_npi = source_ton, source_npi
        self.default_sender = default_sender
        self.service_type = service_type
        self.registered_delivery = registered_delivery
        self.gsm7_packed = gsm7_packed
        self.window = window
        self.connect_timeout, self.submit_timeout = connect_timeout, submit_timeout
        self.throttle_retry_after = throttle_retry_after
        self.max_parts = max_parts
        self.receipt_tz = receipt_tz
        self.tls = tls
        if dlt_tags is not None and not all(0x1400 <= t <= 0x3FFF for t in dlt_tags):
            raise ValueError(f"DLT tags are vendor-specific TLV tags (0x1400–0x3FFF), got {dlt_tags}")
        self.dlt_tags = dlt_tags
        self._memory = memory
        self._session_: _Session | None = None
        self._lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reference = random.randrange(256)
        self._accepted: OrderedDict[str, str] = OrderedDict()  # idempotency key → provider id
        self._progress: OrderedDict[str, _Progress] = OrderedDict()
        self._parts: OrderedDict[str, tuple[str, int, int]] = OrderedDict()  # part id → (provider id, part, parts)
        self._message_parts: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.binds = 0  # how many times this transport has bound (a rebind after a loss counts)

    def __repr__(self) -> str:
        return f"SmppTransport({self.host}:{self.port}, system_id={self.system_id!r})"

    # -- sending ----------------------------------------------------------------------------------------------

    async def deliver(self, request: SendRequest) -> SendResult:
        """Submit ``request`` (an SMS payload: ``text``, ``from``, ``encoding``) to ``request.to``; see the
        module for the outcomes. Never raises for the SMSC's or the network's failures."""
        key = request.idempotency_key
        done = self._accepted.get(key)
        if done is not None:
            return SendResult.accepted(done)
        try:
            plan = self._plan(request)
        except _Refused as refusal:
            return SendResult.permanent(str(refusal), unreachable=refusal.unreachable)
        progress = self._progress.get(key)
        if progress is None or progress.signature != plan:
            reference = 0
            if len(plan.chunks) > 1:
                reference, self._reference = self._reference, (self._reference + 1) % 256
            progress = _Progress(plan, reference, [])
        parts = self._parts_for(plan, progress.reference)
        total = len(parts)
        try:
            session = await self._session()
        except _Unavailable as exc:
            return SendResult.transient(str(exc))
        for index in range(len(progress.message_ids), total):
            result = await self._submit(session, plan, parts, index, key)
            if isinstance(result, SendResult):
                if progress.message_ids and result.outcome == "transient":
                    self._remember(self._progress, key, progress)
                    result = SendResult.transient(
                        f"{result.reason} (parts 1–{len(progress.message_ids)} of {total} were accepted; "
                        f"a retry resumes at part {len(progress.message_ids) + 1})", result.retry_after)
                else:
                    self._progress.pop(key, None)
                return result
            progress.message_ids.append(result)
            if total > 1:  # at once: a part's receipt may come before the last part is accepted
                self._remember(self._parts, result, (progress.message_ids[0], index + 1, total),
                               limit=self._memory * 10)
        self._progress.pop(key, None)
        provider_id = progress.message_ids[0]
        self._remember(self._accepted, key, provider_id)
        if total > 1:
            self._remember(self._message_parts, provider_id, tuple(progress.message_ids))
        return SendResult.accepted(provider_id)

    def part_ids(self, provider_id: str) -> tuple[str, ...]:
        """The message_id of every part of the message ``deliver`` accepted as ``provider_id`` (while
        remembered: the last ``memory`` multipart messages); ``(provider_id,)`` for a single part."""
        return self._message_parts.get(provider_id, (provider_id,))

    def _plan(self, request: SendRequest) -> _Plan:
        body = request.body
        destination = _destination(request.to)
        sender = body.get("from") or request.settings.get("sender_id") or self.default_sender
        source = _source(str(sender), self.source_ton, self.source_npi)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise _Refused("the SMS payload has no text")
        if len(text) > self.max_parts * 160:  # bound the work before encoding anything
            raise _Refused(f"the text is {len(text)} characters, more than {self.max_parts} parts can hold")
        data_coding = 0 if body.get("encoding", "GSM-7") == "GSM-7" and gsm7_encodable(text) else 8
        chunks = split_message(text, data_coding)
        if len(chunks) > self.max_parts:
            raise _Refused(f"the text needs {len(chunks)} parts; this SMPP transport sends at most {self.max_parts}")
        return _Plan(destination, source, data_coding, tuple(chunks), self._dlt(body.get("dlt")))

    def _dlt(self, dlt: Any) -> tuple[tuple[int, bytes], ...]:
        """The DLT TLVs (entity id, template id) for ``dlt_tags``; a DLT payload without both ids is refused."""
        if self.dlt_tags is None or dlt is None:
            return ()
        ids = (dlt.get("entity_id"), dlt.get("template_id")) if isinstance(dlt, Mapping) else (None, None)
        if not all(isinstance(v, str) and v.isascii() and 0 < len(v) <= 64 for v in ids):
            raise _Refused(f"the SMS payload's DLT ids are incomplete (entity and template id needed): {dlt!r}")
        return tuple((tag, str(v).encode() + b"\0") for tag, v in zip(self.dlt_tags, ids, strict=True))

    def _parts_for(self, plan: _Plan, reference: int) -> tuple[_Part, ...]:
        """The submit_sm bodies: one bare part, or each part behind its concatenation header."""
        if len(plan.chunks) == 1:
            return (_Part(self._pack(plan.chunks[0], plan.data_coding, 0), 0, plan.data_coding),)
        total = len(plan.chunks)
        fill = (7 - (_UDH_LENGTH * 8) % 7) % 7  # bits that align packed septets after the header
        return tuple(_Part(bytes((_UDH_LENGTH - 1, 0x00, 0x03, reference, total, seq))
                           + self._pack(chunk, plan.data_coding, fill), _ESM_UDHI, plan.data_coding)
                     for seq, chunk in enumerate(plan.chunks, 1))

    def _pack(self, chunk: bytes, data_coding: int, fill_bits: int) -> bytes:
        if data_coding == 0 and self.gsm7_packed:
            return pack_septets(chunk, fill_bits)
        return chunk

    async def _submit(self, session: _Session, plan: _Plan, parts: tuple[_Part, ...], index: int,
                      key: str) -> str | SendResult:
        """Submit part ``index``: its message_id, or the failure as a SendResult."""
        part = parts[index]
        where = f"part {index + 1} of {len(parts)}" if len(parts) > 1 else "the message"
        assert self._slots is not None
        async with self._slots:
            try:
                response = await asyncio.wait_for(session.smsc.submit_sm(
                    plan.destination[0], part.short_message,
                    source_addr=plan.source[0], source_addr_ton=plan.source[1], source_addr_npi=plan.source[2],
                    dest_addr_ton=plan.destination[1], dest_addr_npi=plan.destination[2],
                    service_type=self.service_type, esm_class=part.esm_class, data_coding=part.data_coding,
                    registered_delivery=self.registered_delivery,
                    tlvs=[smpp34.Tlv(tag, value) for tag, value in plan.tlvs]), self.submit_timeout)
            except TimeoutError:
                await self._drop(session)
                return SendResult.transient(f"no submit_sm_resp for {where} within {self.submit_timeout:g} s; "
                                            "the next send binds again")
            except smpp34.SmppError as exc:
                status = _status_of(exc)
                if status is None or status == 0x08:  # smpp34's own failure: the session is gone or stuck
                    await self._drop(session)
                    return SendResult.transient(f"the SMPP session failed while sending {where} ({exc}); "
                                                "the next send binds again")
                return self._refusal(status, where, session, nack=True)
        status = response.command_status
        if status != 0:
            return self._refusal(status, where, session)
        message_id = response.message_id
        if not message_id:
            log.warning("smpp: %s accepted without a message_id; no receipt can match it", where)
            return f"no-id:{key}:{index + 1}"
        return str(message_id)

    def _refusal(self, status: int, where: str, session: _Session, *, nack: bool = False) -> SendResult:
        said = f"the SMSC {'nacked' if nack else 'refused'} {where}: {status_text(status)}"
        if status in _REBIND:
            session.alive = False
        if status in _RETRYABLE:
            return SendResult.transient(said, self.throttle_retry_after if status == _THROTTLED else None)
        return SendResult.permanent(said, unreachable=status == _INVALID_DESTINATION)

    # -- the session --------------------------------------------------------------------------------------

    async def _session(self) -> _Session:
        """The bound session on the running loop, binding (again) when there is none or it died."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop: locks and sessions belong to one loop
            old = self._session_
            self._loop, self._lock, self._slots, self._session_ = loop, asyncio.Lock(), asyncio.Semaphore(self.window), None
            if old is not None:
                await old.close(unbind=False)
        assert self._lock is not None
        async with self._lock:
            session = self._session_
            if session is not None and session.alive:
                return session
            if session is not None:
                await session.close(unbind=False)
                self._session_ = None
            session = await self._bind(loop)
            self._session_ = session
            return session

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> _Session:
        client = smpp34.Client(self.host, self.port, self.system_id, self._password, bind_type="TRX",
                               system_type=self.system_type, tls=self.tls, window_size=self.window,
                               connect_timeout_ms=max(1, int(self.connect_timeout * 1000)))
        try:
            smsc = await asyncio.wait_for(client.connect(), self.connect_timeout + 1)
        except (smpp34.SmppError, TimeoutError, OSError) as exc:
            try:
                await client.stop()
            except Exception:  # nothing was running
                pass
            hint = " (smpp34 reports a refused bind as a timeout: check system_id and password)" \
                if "timed out" in str(exc) or isinstance(exc, TimeoutError) else ""
            raise _Unavailable(f"cannot bind to the SMSC at {self.host}:{self.port} as {self.system_id!r}: "
                               f"{exc or type(exc).__name__}{hint}") from exc
        session = _Session(client, smsc, loop)
        session.reader = loop.create_task(self._read(session), name=f"smpp-receipts-{self.host}:{self.port}")
        self.binds += 1
        log.info("smpp: bound to %s:%s as %s (session %s)", self.host, self.port, self.system_id, smsc.session_id)
        return session

    async def _drop(self, session: _Session) -> None:
        if self._session_ is session:
            self._session_ = None
        await session.close(unbind=False)

    async def _read(self, session: _Session) -> None:
        """Read the session's deliver_sm until it ends: receipts go to ``on_receipt``."""
        while True:
            try:
                event = await session.smsc.next()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("smpp: reading from the session failed: %s", exc)
                break
            if isinstance(event, smpp34.Disconnected):
                break
            if isinstance(event, smpp34.DeliverSmEvent):
                await self._inbound(event)
        session.alive = False
        log.info("smpp: the session to %s:%s ended", self.host, self.port)

    async def _inbound(self, event: smpp34.DeliverSmEvent) -> None:
        if (event.esm_class & _RECEIPT_BITS) not in _RECEIPT_TYPES:
            log.info("smpp: ignoring a mobile-originated deliver_sm from %s", event.source_addr)
            return
        receipt = self.receipt(event.short_message, event.tlvs)
        if receipt is None:
            log.warning("smpp: a delivery receipt without a message id: %r", event.short_message[:200])
            return
        if self.on_receipt is None:
            return
        try:
            outcome = self.on_receipt(receipt)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # a failing consumer must not end the session
            log.exception("smpp: on_receipt failed for %s", receipt.message_id)

    def receipt(self, short_message: bytes, tlvs: Sequence[Any] = ()) -> Receipt | None:
        """The :class:`Receipt` in a deliver_sm (its text and the receipted_message_id / message_state /
        network_error_code TLVs, the TLVs winning); None when it names no message."""
        fields = parse_receipt_text(short_message[:_MAX_RECEIPT_TEXT].decode("latin-1"))
        by_tag = {t.tag: t.value for t in tlvs}
        message_id = fields.get("id", "")
        if _TLV_RECEIPTED_MESSAGE_ID in by_tag:
            message_id = by_tag[_TLV_RECEIPTED_MESSAGE_ID].split(b"\0")[0].decode("latin-1") or message_id
        message_id = message_id[:_MAX_MESSAGE_ID]
        if not message_id:
            return None
        stat = fields.get("stat", "").upper() or None
        status: ReceiptStatus = _STAT.get(stat or "", "unknown")
        state = by_tag.get(_TLV_MESSAGE_STATE)
        if state is not None and len(state) == 1 and state[0] in _MESSAGE_STATE:
            stat, status = _MESSAGE_STATE[state[0]]
        error = fields.get("err", "")[:16] or None
        network_error = by_tag.get(_TLV_NETWORK_ERROR_CODE)
        if (error is None or not error.strip("0")) and network_error is not None and len(network_error) == 3:
            code = int.from_bytes(network_error[1:], "big")
            error = f"{network_error[0]}:{code}" if code else None
        if error is not None and not error.strip("0"):
            error = None
        provider_id, part, parts = self._parts.get(message_id, (message_id, 1, 1))
        return Receipt(provider_id, status, error, _receipt_time(fields.get("done date"), self.receipt_tz),
                       message_id, stat, part, parts)

    async def aclose(self) -> None:
        """Unbind and close the session (the next ``deliver`` binds again)."""
        session, self._session_ = self._session_, None
        if session is not None:
            await session.close(unbind=True)

    def _remember(self, memory: OrderedDict[Any, Any], key: Any, value: Any, limit: int | None = None) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > (limit or self._memory):
            memory.popitem(last=False)


class _Unavailable(Exception):
    """The SMSC cannot be reached or bound (a transient error)."""


def _status_of(exc: Exception) -> int | None:
    """The command_status in an smpp34 error message (``ESME_RSYSERR (0x00000008)``)."""
    m = _STATUS_IN_ERROR.search(str(exc))
    return int(m.group(1), 16) if m else None
