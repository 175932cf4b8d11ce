"""The Viber transport against a local server answering the REST bot API's shapes (HTTP 200 + status)."""

from __future__ import annotations

import pytest

from service.worker.transports.config import Options
from service.worker.transports.viber import ViberTransport

from .conftest import request

TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
RECEIVER = "01234567890A="
MESSAGE = {"receiver": RECEIVER, "min_api_version": 1, "sender": {"name": "Herald Shop"}, "type": "text",
           "text": "Hello, 20% off today", "keyboard": {"Type": "keyboard", "DefaultHeight": False, "Buttons": [
               {"ActionType": "open-url", "ActionBody": "https://shop.example", "Text": "Shop", "Columns": 6,
                "Rows": 1}]}}


def transport(httpserver) -> ViberTransport:
    return ViberTransport(Options({"auth_token": TOKEN, "base_url": httpserver.url_for("/")}, "transports.viber"))


@pytest.mark.asyncio
async def test_a_message_is_posted_with_the_auth_token(httpserver):
    httpserver.expect_oneshot_request("/pa/send_message", method="POST", headers={"X-Viber-Auth-Token": TOKEN},
                                      json=MESSAGE).respond_with_json(
        {"status": 0, "status_message": "ok", "message_token": 5741311803571721087, "chat_hostname": "SN-CHAT-05_"})
    t = transport(httpserver)
    result = await t.deliver(request("viber", RECEIVER, MESSAGE))
    await t.aclose()
    httpserver.check_assertions()
    assert result.ok and result.provider_id == "5741311803571721087"


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "message", "outcome", "unreachable"), [
    (5, "receiverNotRegistered", "permanent", True),
    (6, "receiverNotSubscribed", "permanent", True),
    (11, "receiverNoSuitableDevice", "permanent", True),
    (2, "invalidAuthToken", "permanent", False),
    (3, "badData", "permanent", False),
    (12, "tooManyRequests", "transient", False),
    (99, "General error", "transient", False),
])
async def test_status_codes(httpserver, status, message, outcome, unreachable):
    httpserver.expect_oneshot_request("/pa/send_message").respond_with_json(
        {"status": status, "status_message": message, "chat_hostname": "SN-CHAT-05_"})
    t = transport(httpserver)
    result = await t.deliver(request("viber", RECEIVER, MESSAGE))
    await t.aclose()
    assert (result.outcome, result.unreachable) == (outcome, unreachable)
    assert f"status {status}" in (result.reason or "") and TOKEN not in (result.reason or "")


@pytest.mark.asyncio
async def test_an_http_error_is_mapped_by_its_status(httpserver):
    httpserver.expect_oneshot_request("/pa/send_message").respond_with_data("upstream down", 502)
    t = transport(httpserver)
    result = await t.deliver(request("viber", RECEIVER, MESSAGE))
    await t.aclose()
    assert result.outcome == "transient" and "502" in (result.reason or "")
