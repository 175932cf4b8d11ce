"""The WhatsApp Cloud API transport against a local server answering the Graph API's shapes."""

from __future__ import annotations

from typing import Any

import pytest

from service.worker.transports.config import Options
from service.worker.transports.whatsapp import WhatsAppTransport

from .conftest import request

TOKEN = "EAAGm0PX4ZCpsBAKtoken"
PHONE_ID = "106540352242922"
PATH = f"/v21.0/{PHONE_ID}/messages"
TEMPLATE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15558675310", "type": "template",
            "template": {"name": "summer_sale_2026", "language": {"code": "en_US"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "20%"}]}]}}


def transport(httpserver, **options: Any) -> WhatsAppTransport:
    return WhatsAppTransport(Options({"access_token": TOKEN, "phone_number_id": PHONE_ID,
                                      "base_url": httpserver.url_for("/"), **options}, "transports.whatsapp"))


def graph_error(code: int, message: str, subcode: int | None = None, details: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                             "fbtrace_id": "AazB8rHPv6JYy5Uj9qZ0Cq2"}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.mark.asyncio
async def test_a_template_message_is_posted_with_the_bearer_token(httpserver):
    httpserver.expect_oneshot_request(PATH, method="POST", headers={"Authorization": f"Bearer {TOKEN}"},
                                      json=TEMPLATE).respond_with_json(
        {"messaging_product": "whatsapp", "contacts": [{"input": "15558675310", "wa_id": "15558675310"}],
         "messages": [{"id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA", "message_status": "accepted"}]})
    t = transport(httpserver)
    result = await t.deliver(request("whatsapp", "15558675310", TEMPLATE))
    await t.aclose()
    httpserver.check_assertions()
    assert result.ok and result.provider_id == "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"


@pytest.mark.asyncio
async def test_the_api_version_is_configurable(httpserver):
    httpserver.expect_oneshot_request(f"/v23.0/{PHONE_ID}/messages").respond_with_json({"messages": [{"id": "wamid.X"}]})
    t = transport(httpserver, api_version="v23.0")
    assert (await t.deliver(request("whatsapp", "15558675310", TEMPLATE))).ok
    await t.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "body", "headers", "outcome", "unreachable", "retry_after"), [
    (400, graph_error(131026, "Message undeliverable", details="Message Undeliverable."), {}, "permanent", True, None),
    (400, graph_error(131021, "Recipient cannot be sender"), {}, "permanent", True, None),
    (400, graph_error(132001, "Template name does not exist in the translation",
                      details="template name (summer_sale_2026) does not exist in en_US"), {}, "permanent", False, None),
    (401, graph_error(190, "Error validating access token: Session has expired", 463), {}, "permanent", False, None),
    (400, graph_error(130429, "Rate limit hit"), {}, "transient", False, None),
    (400, graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit"), {}, "transient", False, None),
    (429, graph_error(80007, "Rate limit issues"), {"Retry-After": "60"}, "transient", False, 60.0),
    (500, graph_error(131000, "Something went wrong"), {}, "transient", False, None),
])
async def test_error_answers(httpserver, status, body, headers, outcome, unreachable, retry_after):
    httpserver.expect_oneshot_request(PATH).respond_with_json(body, status, headers=headers)
    t = transport(httpserver)
    result = await t.deliver(request("whatsapp", "15558675310", TEMPLATE))
    await t.aclose()
    assert (result.outcome, result.unreachable, result.retry_after) == (outcome, unreachable, retry_after)
    assert f"error {body['error']['code']}" in (result.reason or "") and TOKEN not in (result.reason or "")


@pytest.mark.asyncio
async def test_a_gateway_error_without_a_graph_error_is_transient(httpserver):
    httpserver.expect_oneshot_request(PATH).respond_with_data("<html>502 Bad Gateway</html>", 502)
    t = transport(httpserver)
    result = await t.deliver(request("whatsapp", "15558675310", TEMPLATE))
    await t.aclose()
    assert result.outcome == "transient" and "502" in (result.reason or "")
