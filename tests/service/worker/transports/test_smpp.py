"""The SMPP transport against a real SMSC on loopback.

smpp34 ships a server toolkit (``smpp34.Server``), not a simulator, so the SMSC here is built on it: its
``next()`` events are answered by a script (accept, a command_status, no answer, cut the connection), and it
pushes delivery receipts with ``Esme.deliver_sm``. smpp34's Python server accepts every bind, so the SMSC
listens behind a loopback relay that reads the bind PDU off the wire, refuses a wrong system_id or password
with ESME_RINVPASWD (as an SMSC does) and can drop every connection at once.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import smpp34

from engine.contracts import SendRequest
from plugins.channels.sms import segments
from service.worker.transports.smpp import Receipt, SmppTransport, parse_receipt_text, split_message

SYSTEM_ID, PASSWORD, SYSTEM_TYPE = "herald", "s3cret", "MKT"
BIND_TRANSCEIVER = 0x00000009
# SMPP 3.4 §5.3.2 optional parameter tags (smpp34 has them as module attributes its stubs do not declare)
TLV_RECEIPTED_MESSAGE_ID, TLV_MESSAGE_STATE, TLV_NETWORK_ERROR_CODE = 0x001E, 0x0427, 0x0423

# The GSM 03.38 default alphabet and extension table, written out here independently of the transport's.
GSM_BASIC = dict(enumerate(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"))
GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
                 0x40: "|", 0x65: "€"}


def gsm_decode(septets: bytes) -> str:
    """Unpacked GSM 03.38 septets → text."""
    out, escape = [], False
    for s in septets:
        assert s < 0x80, f"octet {s:#x} is not a septet"
        if escape:
            out.append(GSM_EXTENSION[s])
            escape = False
        elif s == 0x1B:
            escape = True
        else:
            out.append(GSM_BASIC[s])
    assert not escape, "the text ends in half an escape pair"
    return "".join(out)


def unpack(octets: bytes, fill_bits: int) -> bytes:
    """Packed septets (LSB first, after ``fill_bits``) → one septet per octet; a trailing CR pad is dropped."""
    value, bits = int.from_bytes(octets, "little"), len(octets) * 8
    septets = bytes((value >> pos) & 0x7F for pos in range(fill_bits, bits - 6, 7))
    return septets[:-1] if (bits - fill_bits) % 7 == 0 and septets.endswith(b"\r") else septets


@dataclass
class Part:
    """One submit_sm as the SMSC decoded it."""

    event: Any
    ref: int | None
    total: int
    seq: int
    payload: bytes


def decode_part(event: Any) -> Part:
    """Split a submit_sm's short_message into its concatenation header (when UDHI is set) and payload."""
    sm = event.short_message
    if not event.esm_class & 0x40:
        return Part(event, None, 1, 1, sm)
    udhl = sm[0]
    udh = sm[1:1 + udhl]
    assert udh[:2] == b"\x00\x03" and udhl == 5, f"not an 8-bit concatenation header: {sm[:1 + udhl].hex()}"
    return Part(event, udh[2], udh[3], udh[4], sm[1 + udhl:])


def reassemble(parts: list[Part], packed: bool = False) -> str:
    """The text of a message from its parts, as a handset joins them (checking the headers agree)."""
    assert len({p.ref for p in parts}) == 1 and all(p.total == len(parts) for p in parts)
    assert [p.seq for p in parts] == list(range(1, len(parts) + 1))
    codings = {p.event.data_coding for p in parts}
    assert len(codings) == 1
    if codings == {8}:
        return b"".join(p.payload for p in parts).decode("utf-16-be")  # a split surrogate pair would raise
    texts = []
    for p in parts:
        septets = unpack(p.payload, 1 if p.ref is not None else 0) if packed else p.payload
        assert len(septets) <= (153 if len(parts) > 1 else 160)
        texts.append(gsm_decode(septets))  # a split escape pair would fail here
    return "".join(texts)


@dataclass
class Smsc:
    """A test SMSC: smpp34's Server, a credential-checking relay in front, and a script of answers."""

    system_id: str = SYSTEM_ID
    password: str = PASSWORD
    script: list[Any] = field(default_factory=list)  # per submit_sm: "accept", a status, "hang", "cut", a delay
    submits: list[Any] = field(default_factory=list)
    binds: list[tuple[int, str, str, str]] = field(default_factory=list)
    refused: int = 0
    unbound: int = 0
    esmes: dict[str, Any] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0

    async def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.upstream = s.getsockname()[1]
        self.server = smpp34.Server("127.0.0.1", self.upstream, system_id="TESTSMSC")
        await self.server.start()
        self.relay = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.relay.sockets[0].getsockname()[1]
        self.connections: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        self.loop.cancel()
        self.cut()
        self.relay.close()
        await self.server.stop()

    def cut(self) -> None:
        """Drop every connection, as a network failure would (no unbind)."""
        for writer in list(self.connections):
            writer.transport.abort()
        self.connections.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(16)
        length, command_id, _, sequence = struct.unpack(">IIII", header)
        body = await reader.readexactly(length - 16)
        system_id, password, system_type = (v.decode() for v in body.split(b"\0")[:3])
        self.binds.append((command_id, system_id, password, system_type))
        if (system_id, password) != (self.system_id, self.password):
            self.refused += 1
            writer.write(struct.pack(">IIII", 16, command_id | 0x80000000, 0x0E, sequence))  # ESME_RINVPASWD
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        up_writer.write(header + body)
        self.connections |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def _serve(self) -> None:
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                self.esmes[event.session_id] = event
            elif isinstance(event, smpp34.Unbound):
                self.unbound += 1
                self.esmes.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                self.submits.append(event)
                action = self.script.pop(0) if self.script else "accept"
                task = asyncio.create_task(self._answer(event, action, f"msg-{len(self.submits)}"))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _answer(self, event: Any, action: Any, message_id: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if isinstance(action, float):
                await asyncio.sleep(action)
                action = "accept"
            if action == "accept":
                event.accept(message_id)
            elif action == "no id":
                event.accept("")
            elif action == "cut":
                self.cut()
            elif isinstance(action, int):
                event.reject(action)
            else:
                assert action == "hang"
        finally:
            self.in_flight -= 1

    async def receipt(self, text: bytes, tlvs: list[Any] | None = None, esm_class: int = 0x04) -> None:
        """Send a deliver_sm to the bound ESME (a receipt by default) and check its deliver_sm_resp."""
        esme = next(iter(self.esmes.values()))
        resp = await esme.deliver_sm("Herald", text, source_addr="4915112345678", esm_class=esm_class,
                                     tlvs=tlvs or [])
        assert resp.is_success


@pytest_asyncio.fixture
async def smsc() -> AsyncIterator[Smsc]:
    """A running test SMSC on loopback."""
    server = Smsc()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def receipts() -> list[Receipt]:
    """What the transport's on_receipt was given."""
    return []


@pytest_asyncio.fixture
async def transport(smsc: Smsc, receipts: list[Receipt]) -> AsyncIterator[SmppTransport]:
    """A transport with the right credentials for ``smsc``, unbound at the end."""
    t = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, SYSTEM_TYPE, on_receipt=receipts.append,
                      submit_timeout=2.0, connect_timeout=2.0)
    yield t
    await t.aclose()


def sms(text: str, to: str = "+4915112345678", sender: str = "Herald", key: str = "k1",
        encoding: str | None = None, **extra: Any) -> SendRequest:
    """A request as the SMS channel builds it (``render``'s payload)."""
    enc, units, parts = segments(text)
    body = {"to": to, "from": sender, "text": text, "encoding": encoding or enc, "units": units, "segments": parts,
            **extra}
    return SendRequest("sms", to, body, key)


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for ``condition()`` to hold (events cross from the SMSC's task)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)



@pytest.mark.asyncio
async def test_gsm7_text_with_escapes_is_one_submit_sm_with_the_right_fields(smsc: Smsc, transport: SmppTransport):
    text = "Sale [20%] on {shoes} ~ ^caret^ | back\\slash, €5 off! Reply STOP"
    result = await transport.deliver(sms(text))

    assert result.outcome == "accepted" and result.provider_id == "msg-1"
    assert smsc.binds == [(BIND_TRANSCEIVER, SYSTEM_ID, PASSWORD, SYSTEM_TYPE)]
    [event] = smsc.submits
    assert (event.data_coding, event.esm_class, event.registered_delivery) == (0, 0, 1)
    assert (event.destination_addr, event.dest_addr_ton, event.dest_addr_npi) == ("4915112345678", 1, 1)
    assert (event.source_addr, event.source_addr_ton, event.source_addr_npi) == ("Herald", 5, 0)
    assert gsm_decode(event.short_message) == text
    assert len(event.short_message) == segments(text)[1]  # an escape pair costs two septets


@pytest.mark.asyncio
async def test_ucs2_with_emoji_never_splits_a_surrogate_pair(smsc: Smsc, transport: SmppTransport):
    text = "Grüße " + "x" * 60 + "😀 Привет 🎉 done"  # the first emoji would straddle unit 67
    result = await transport.deliver(sms(text))

    assert result.ok
    parts = [decode_part(e) for e in smsc.submits]
    assert len(parts) == segments(text)[2] == 2
    assert all(p.event.data_coding == 8 and p.event.esm_class == 0x40 for p in parts)
    assert all(len(p.payload) <= 67 * 2 for p in parts)
    assert parts[0].payload.decode("utf-16-be").endswith("x")  # the pair went to part 2, whole
    assert reassemble(parts) == text


@pytest.mark.asyncio
async def test_three_part_gsm7_message_shares_a_reference_and_keeps_every_part_id(
        smsc: Smsc, transport: SmppTransport):
    text = "a" * 152 + "€" + "b" * 150 + "[]" + "c" * 60  # € and [ would each straddle a part boundary
    first = await transport.deliver(sms(text, key="m1"))
    second = await transport.deliver(sms("d" * 200, key="m2"))

    parts = [decode_part(e) for e in smsc.submits[:3]]
    assert segments(text)[2] == 3 and len(parts) == 3
    assert all(p.event.esm_class == 0x40 and p.event.data_coding == 0 for p in parts)
    assert reassemble(parts) == text
    assert first.provider_id == "msg-1"  # the first part's id …
    assert transport.part_ids("msg-1") == ("msg-1", "msg-2", "msg-3")  # … and every part's kept
    other = [decode_part(e) for e in smsc.submits[3:]]
    assert second.provider_id == "msg-4" and len(other) == 2
    assert other[0].ref != parts[0].ref  # a reference number per message


@pytest.mark.asyncio
async def test_packed_gsm7_parts_decode_with_the_header_fill_bit(smsc: Smsc):
    transport = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, gsm7_packed=True)
    try:
        long_text = "Packed {GSM} " * 20
        short_text = "1234567"  # 7 septets leave 7 spare bits: padded with CR, not read as '@'
        assert (await transport.deliver(sms(long_text, key="a"))).ok
        assert (await transport.deliver(sms(short_text, key="b"))).ok
    finally:
        await transport.aclose()
    parts = [decode_part(e) for e in smsc.submits]
    assert len(parts[:-1]) == 2 and all(len(p.payload) <= 134 for p in parts[:-1])  # 140 octets with the UDH
    assert reassemble(parts[:-1], packed=True) == long_text
    assert len(parts[-1].payload) == 7 and gsm_decode(unpack(parts[-1].payload, 0)) == short_text


@pytest.mark.asyncio
async def test_sender_kinds_choose_source_ton_and_npi(smsc: Smsc, transport: SmppTransport):
    for i, sender in enumerate(["Herald", "12345", "+4930123456789", "4930123456789"]):
        assert (await transport.deliver(sms("hi", sender=sender, key=f"k{i}"))).ok
    got = [(e.source_addr, e.source_addr_ton, e.source_addr_npi) for e in smsc.submits]
    assert got == [("Herald", 5, 0), ("12345", 3, 0), ("4930123456789", 1, 1), ("4930123456789", 1, 1)]
    assert len(smsc.binds) == 1  # one bind serves every send


@pytest.mark.asyncio
async def test_throttling_is_transient_then_the_retry_goes_through_on_the_same_bind(
        smsc: Smsc, transport: SmppTransport):
    smsc.script = [0x58]
    first = await transport.deliver(sms("hello"))
    assert first.outcome == "transient" and first.retry_after == 1.0
    assert "ESME_RTHROTTLED (0x00000058)" in (first.reason or "")

    again = await transport.deliver(sms("hello"))
    assert again.ok and again.provider_id == "msg-2"
    assert len(smsc.binds) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "outcome", "unreachable", "words"), [
    (0x0B, "permanent", True, "ESME_RINVDSTADR (0x0000000B): invalid destination address"),
    (0x0A, "permanent", False, "ESME_RINVSRCADR (0x0000000A): invalid source address"),
    (0x14, "transient", False, "ESME_RMSGQFUL (0x00000014): message queue full"),
    (0x08, "transient", False, "ESME_RSYSERR (0x00000008): system error"),
])
async def test_command_status_decides_the_outcome(smsc: Smsc, transport: SmppTransport, status: int, outcome: str,
                                                 unreachable: bool, words: str):
    smsc.script = [status]
    result = await transport.deliver(sms("hello"))
    assert (result.outcome, result.unreachable) == (outcome, unreachable)
    assert words in (result.reason or "")


@pytest.mark.asyncio
async def test_a_connection_dropped_mid_send_is_transient_and_the_next_send_binds_again(
        smsc: Smsc, transport: SmppTransport):
    assert (await transport.deliver(sms("one", key="a"))).ok
    smsc.script = ["cut"]
    lost = await transport.deliver(sms("two", key="b"))
    assert lost.outcome == "transient" and "binds again" in (lost.reason or "")

    again = await transport.deliver(sms("two", key="b"))
    assert again.ok
    assert len(smsc.binds) == 2 and transport.binds == 2
    assert gsm_decode(smsc.submits[-1].short_message) == "two"


@pytest.mark.asyncio
async def test_no_answer_times_out_as_transient(smsc: Smsc):
    transport = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, submit_timeout=0.3)
    try:
        smsc.script = ["hang"]
        result = await transport.deliver(sms("hello"))
        assert result.outcome == "transient" and "no submit_sm_resp for the message within 0.3 s" in (result.reason or "")
        assert (await transport.deliver(sms("hello"))).ok
        assert transport.binds == 2  # the stuck session was dropped
    finally:
        await transport.aclose()


@pytest.mark.asyncio
async def test_a_multipart_send_cut_short_resumes_at_the_first_part_not_accepted(
        smsc: Smsc, transport: SmppTransport):
    text = "z" * 400  # three parts
    smsc.script = ["accept", 0x58]
    first = await transport.deliver(sms(text))
    assert first.outcome == "transient" and "parts 1–1 of 3 were accepted" in (first.reason or "")

    again = await transport.deliver(sms(text))
    assert again.ok and again.provider_id == "msg-1"
    parts = [decode_part(e) for e in smsc.submits]
    assert [p.seq for p in parts] == [1, 2, 2, 3]  # part 1 was not sent twice
    assert reassemble([parts[0], parts[2], parts[3]]) == text  # one reference across both attempts
    assert transport.part_ids("msg-1") == ("msg-1", "msg-3", "msg-4")


@pytest.mark.asyncio
async def test_an_accepted_key_is_not_sent_twice(smsc: Smsc, transport: SmppTransport):
    first = await transport.deliver(sms("hello", key="same"))
    second = await transport.deliver(sms("hello", key="same"))
    assert first.provider_id == second.provider_id == "msg-1"
    assert len(smsc.submits) == 1


@pytest.mark.asyncio
async def test_delivery_receipts_reach_on_receipt(smsc: Smsc, transport: SmppTransport, receipts: list[Receipt]):
    single = await transport.deliver(sms("hello", key="a"))
    multi = await transport.deliver(sms("y" * 300, key="b"))
    assert single.provider_id == "msg-1" and multi.provider_id == "msg-2"

    await smsc.receipt(b"id:msg-1 sub:001 dlvrd:001 submit date:2612031200 done date:2612031201 "
                       b"stat:DELIVRD err:000 text:hello")
    await smsc.receipt(b"id:msg-3 sub:001 dlvrd:000 submit date:2612031200 done date:261203120230 "
                       b"stat:DELIVRD err:000 text:yyy", tlvs=[   # the TLVs win over the text
                           smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, b"msg-3\0"),
                           smpp34.Tlv(TLV_MESSAGE_STATE, b"\x05"),  # UNDELIVERABLE
                           smpp34.Tlv(TLV_NETWORK_ERROR_CODE, b"\x03\x00\x22")])  # GSM, error 34
    await smsc.receipt(b"id:zzz stat:EXPIRED err:0 done date:2612031300")
    await smsc.receipt(b"STOP", esm_class=0)  # a mobile-originated message is not a receipt
    await until(lambda: len(receipts) == 3)
    await asyncio.sleep(0.1)

    assert receipts[0] == Receipt("msg-1", "delivered", None, datetime(2026, 12, 3, 12, 1, tzinfo=UTC), "msg-1",
                                  "DELIVRD", 1, 1)
    assert receipts[1] == Receipt("msg-2", "failed", "3:34", datetime(2026, 12, 3, 12, 2, 30, tzinfo=UTC), "msg-3",
                                  "UNDELIV", 2, 2)
    assert (receipts[2].provider_id, receipts[2].status, receipts[2].error_code) == ("zzz", "expired", None)
    assert len(receipts) == 3


@pytest.mark.asyncio
async def test_a_failing_receipt_consumer_does_not_end_the_session(smsc: Smsc):
    seen: list[Receipt] = []

    async def consume(receipt: Receipt) -> None:
        seen.append(receipt)
        raise RuntimeError("store is down")

    transport = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, on_receipt=consume)
    try:
        assert (await transport.deliver(sms("hello", key="a"))).ok
        await smsc.receipt(b"id:msg-1 stat:REJECTD err:042")
        await smsc.receipt(b"id:msg-1 stat:DELIVRD err:000")
        await until(lambda: len(seen) == 2)
        assert [(r.status, r.error_code) for r in seen] == [("rejected", "042"), ("delivered", None)]
        assert (await transport.deliver(sms("again", key="b"))).ok
        assert transport.binds == 1
    finally:
        await transport.aclose()


@pytest.mark.asyncio
async def test_a_window_of_concurrent_sends_shares_one_bind(smsc: Smsc):
    transport = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, window=4)
    try:
        smsc.script = [0.05] * 12
        results = await asyncio.gather(*(transport.deliver(sms(f"n{i}", key=f"k{i}")) for i in range(12)))
        assert all(r.ok for r in results) and len({r.provider_id for r in results}) == 12
        assert len(smsc.binds) == 1
        assert 1 < smsc.most_in_flight <= 4
    finally:
        await transport.aclose()


@pytest.mark.asyncio
async def test_a_wrong_password_is_refused_and_reported(smsc: Smsc):
    transport = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, "wrong", connect_timeout=0.5)
    result = await transport.deliver(sms("hello"))
    assert result.outcome == "transient"
    assert "cannot bind to the SMSC" in (result.reason or "") and "check system_id and password" in (result.reason or "")
    assert smsc.refused == 1 and smsc.submits == []


@pytest.mark.asyncio
async def test_an_smsc_that_is_down_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = SmppTransport("127.0.0.1", port, SYSTEM_ID, PASSWORD)
    result = await transport.deliver(sms("hello"))
    assert result.outcome == "transient" and "Connection refused" in (result.reason or "")


@pytest.mark.asyncio
async def test_requests_that_cannot_be_sent_fail_before_anything_goes_out(smsc: Smsc, transport: SmppTransport):
    bad_number = await transport.deliver(sms("hello", to="call me"))
    assert bad_number.outcome == "permanent" and bad_number.unreachable
    bad_sender = await transport.deliver(sms("hello", sender="FarTooLongSender"))
    assert bad_sender.outcome == "permanent" and not bad_sender.unreachable and "alphanumeric" in (bad_sender.reason or "")
    too_long = await transport.deliver(sms("x" * 100_000))
    assert too_long.outcome == "permanent" and "parts" in (too_long.reason or "")
    assert smsc.binds == [] and smsc.submits == []


@pytest.mark.asyncio
async def test_aclose_unbinds(smsc: Smsc, transport: SmppTransport):
    assert (await transport.deliver(sms("hello"))).ok
    await transport.aclose()
    await until(lambda: smsc.unbound == 1)
    assert (await transport.deliver(sms("later", key="k2"))).ok  # and a later send binds again
    assert transport.binds == 2


@pytest.mark.parametrize("text", [
    "plain", "x" * 160, "x" * 161, "€" * 80, "€" * 81, "a" * 152 + "€" * 5, "é" * 70, "é" + "😀" * 35,
    "😀" * 36, "Ω" * 400, "[" * 77 + "a", "y" * 153 * 3, "y" * (153 * 3 + 1),
])
def test_splitting_agrees_with_the_sms_channel_count(text: str):
    enc, _units, parts = segments(text)
    assert len(split_message(text, 0 if enc == "GSM-7" else 8)) == parts


def test_receipt_text_parsing_keeps_the_text_field_whole():
    fields = parse_receipt_text("id:ABC123 sub:001 dlvrd:001 submit date:2612031200 done date:2612031201 "
                                "stat:DELIVRD err:000 text:stat:fake id:evil")
    assert fields == {"id": "ABC123", "sub": "001", "dlvrd": "001", "submit date": "2612031200",
                      "done date": "2612031201", "stat": "DELIVRD", "err": "000", "text": "stat:fake id:evil"}
    assert parse_receipt_text("garbage") == {}


@pytest.mark.asyncio
async def test_a_receipt_for_a_part_that_comes_before_the_last_part_is_accepted(
        smsc: Smsc, transport: SmppTransport, receipts: list[Receipt]):
    smsc.script = ["accept", "accept", 0.5]
    sending = asyncio.ensure_future(transport.deliver(sms("q" * 400)))
    await until(lambda: len(smsc.submits) == 3)  # part 3 is waiting for its answer
    await smsc.receipt(b"id:msg-2 stat:DELIVRD err:000")
    await until(lambda: len(receipts) == 1)
    assert not sending.done()
    assert (receipts[0].provider_id, receipts[0].part, receipts[0].parts) == ("msg-1", 2, 3)
    assert (await sending).provider_id == "msg-1"


@pytest.mark.asyncio
async def test_dlt_ids_go_as_vendor_tlvs_on_every_part(smsc: Smsc):
    transport = SmppTransport("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, dlt_tags=(0x1400, 0x1401))
    try:
        dlt = {"entity_id": "1101234567890123456", "template_id": "1107160000000000001"}
        assert (await transport.deliver(sms("r" * 200, dlt=dlt, key="a"))).ok
        refused = await transport.deliver(sms("hi", dlt={"entity_id": "1101", "template_id": None}, key="b"))
        assert refused.outcome == "permanent" and "DLT ids are incomplete" in (refused.reason or "")
    finally:
        await transport.aclose()
    assert len(smsc.submits) == 2
    for event in smsc.submits:
        assert {t.tag: t.value for t in event.tlvs} == {0x1400: b"1101234567890123456\0",
                                                       0x1401: b"1107160000000000001\0"}


def test_a_new_event_loop_gets_a_new_bind():
    """Sessions belong to the loop that bound them: a transport used from a second ``asyncio.run`` binds again."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = Smsc()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        transport = SmppTransport("127.0.0.1", server.port, SYSTEM_ID, PASSWORD)
        assert asyncio.run(transport.deliver(sms("first", key="a"))).ok
        assert asyncio.run(transport.deliver(sms("second", key="b"))).ok
        asyncio.run(transport.aclose())
        assert transport.binds == 2 and len(server.binds) == 2
        assert [gsm_decode(e.short_message) for e in server.submits] == ["first", "second"]
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.asyncio
async def test_the_payload_encoding_is_kept_unless_the_text_cannot_take_it(smsc: Smsc, transport: SmppTransport):
    assert (await transport.deliver(sms("plain", encoding="UCS-2", key="a"))).ok
    assert (await transport.deliver(sms("naïve ☃", encoding="GSM-7", key="b"))).ok  # ï and ☃ are not GSM-7
    assert [e.data_coding for e in smsc.submits] == [8, 8]
    assert [e.short_message.decode("utf-16-be") for e in smsc.submits] == ["plain", "naïve ☃"]


@pytest.mark.asyncio
async def test_an_acceptance_without_a_message_id_is_still_accepted(smsc: Smsc, transport: SmppTransport):
    smsc.script = ["no id"]
    result = await transport.deliver(sms("hello", key="abc"))
    assert result.ok and result.provider_id == "no-id:abc:1"
