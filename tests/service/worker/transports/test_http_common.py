"""What every HTTP transport shares, through the Viber and LINE transports: network failures and timeouts
are transient, a provider's answer is read only up to its limit, Retry-After is understood in both forms,
and the client is made lazily in the running loop and reused."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import pytest
from werkzeug import Request, Response

from service.worker.transports.config import Options
from service.worker.transports.http_common import retry_after
from service.worker.transports.line import LineTransport
from service.worker.transports.viber import ViberTransport

from .conftest import request

MESSAGE = {"receiver": "r1", "type": "text", "text": "hi", "sender": {"name": "Shop"}}
TOKEN = "viber-token-secret-1234"


def viber(base_url: str, **options: Any) -> ViberTransport:
    return ViberTransport(Options({"auth_token": TOKEN, "base_url": base_url, **options}, "transports.viber"))


def test_retry_after_in_seconds_and_as_a_date():
    now = time.time()
    assert retry_after("120") == 120.0
    assert retry_after(" 0 ") == 0.0
    assert retry_after(formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90, abs=1)
    assert retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0  # a date in the past: now
    assert retry_after("99999999") == 24 * 3600.0  # clamped to a day
    assert retry_after("-5") == 0.0
    assert retry_after("soon") is None and retry_after(None) is None and retry_after("nan") is None


@pytest.mark.asyncio
async def test_a_refused_connection_is_transient(closed_port):
    t = viber(f"http://127.0.0.1:{closed_port}")
    result = await t.deliver(request("viber", "r1", MESSAGE))
    await t.aclose()
    assert result.outcome == "transient" and "network error" in (result.reason or "")
    assert TOKEN not in (result.reason or "")


@pytest.mark.asyncio
async def test_a_slow_provider_times_out_as_transient(httpserver):
    def slow(req: Request) -> Response:
        time.sleep(1.0)
        return Response('{"status": 0, "message_token": 1}', 200, content_type="application/json")

    httpserver.expect_oneshot_request("/pa/send_message").respond_with_handler(slow)
    t = viber(httpserver.url_for("/"), timeout=0.3)
    started = time.monotonic()
    result = await t.deliver(request("viber", "r1", MESSAGE))
    await t.aclose()
    assert result.outcome == "transient" and "timed out after 0.3s" in (result.reason or "")
    assert time.monotonic() - started < 0.9


@pytest.mark.asyncio
async def test_an_oversized_answer_is_not_read_past_the_limit(httpserver):
    huge = '{"status": 0, "message_token": 1, "pad": "' + "x" * 300_000 + '"}'
    httpserver.expect_oneshot_request("/pa/send_message").respond_with_data(huge, 200, content_type="application/json")
    t = viber(httpserver.url_for("/"), max_response_bytes=4096)
    result = await t.deliver(request("viber", "r1", MESSAGE))
    await t.aclose()
    assert result.outcome == "transient" and "exceeded 4096 bytes" in (result.reason or "")


@pytest.mark.asyncio
async def test_an_answer_that_is_not_json_is_transient(httpserver):
    httpserver.expect_oneshot_request("/pa/send_message").respond_with_data("<html>maintenance</html>", 200)
    t = viber(httpserver.url_for("/"))
    result = await t.deliver(request("viber", "r1", MESSAGE))
    await t.aclose()
    assert result.outcome == "transient" and "maintenance" in (result.reason or "")


@pytest.mark.asyncio
async def test_the_client_is_made_on_first_send_and_reused(httpserver):
    httpserver.expect_request("/pa/send_message").respond_with_json({"status": 0, "message_token": 7})
    t = viber(httpserver.url_for("/"))
    assert t._client is None  # nothing opened before the first send
    assert (await t.deliver(request("viber", "r1", MESSAGE))).ok
    client = t._client
    assert (await t.deliver(request("viber", "r1", MESSAGE))).ok
    assert t._client is client and client is not None
    await t.aclose()
    assert client.is_closed and t._client is None


def test_a_send_in_another_event_loop_gets_a_client_of_its_own(httpserver):
    httpserver.expect_request("/pa/send_message").respond_with_json({"status": 0, "message_token": 7})
    t = viber(httpserver.url_for("/"))
    assert asyncio.run(t.deliver(request("viber", "r1", MESSAGE))).ok
    first = t._client
    assert asyncio.run(t.deliver(request("viber", "r1", MESSAGE))).ok  # the first loop is closed by now
    assert t._client is not first
    asyncio.run(t.aclose())


@pytest.mark.asyncio
async def test_secrets_never_show_in_reprs(httpserver):
    line = LineTransport(Options({"channel_access_token": "line-secret-token", "base_url": httpserver.url_for("/")},
                                 "transports.line"))
    assert "line-secret-token" not in repr(line) and TOKEN not in repr(viber(httpserver.url_for("/")))
    assert "line-secret-token" not in repr(line.channel_access_token)


@pytest.mark.asyncio
async def test_a_provider_dripping_its_answer_is_cut_off(httpserver):
    def drip(req: Request) -> Response:
        def chunks():
            yield b'{"status": 0, '
            for _ in range(20):
                time.sleep(0.1)  # each read is quick, the whole answer is not
                yield b" "
            yield b'"message_token": 1}'
        return Response(chunks(), 200, content_type="application/json")

    httpserver.expect_oneshot_request("/pa/send_message").respond_with_handler(drip)
    t = viber(httpserver.url_for("/"), timeout=0.5)
    started = time.monotonic()
    result = await t.deliver(request("viber", "r1", MESSAGE))
    await t.aclose()
    assert result.outcome == "transient" and "timed out" in (result.reason or "")
    assert time.monotonic() - started < 1.8
