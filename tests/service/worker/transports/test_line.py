"""The LINE push transport against a local server answering the Messaging API's shapes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from werkzeug import Request, Response

from service.worker.transports.config import Options
from service.worker.transports.line import LineTransport, retry_key

from .conftest import KEY, request

TOKEN = "line-channel-access-token-xyz"
USER = "U4af4980629f3d1bf1f6f0e0c0b6d4a2b"
PUSH = {"to": USER, "messages": [{"type": "text", "text": "Hello Ana, 20% off today"},
                                 {"type": "image", "originalContentUrl": "https://cdn.example/a.jpg",
                                  "previewImageUrl": "https://cdn.example/a.jpg"}]}


def transport(httpserver) -> LineTransport:
    return LineTransport(Options({"channel_access_token": TOKEN, "base_url": httpserver.url_for("/")},
                                 "transports.line"))


def test_the_retry_key_is_the_idempotency_key_as_a_uuid():
    assert retry_key(KEY) == str(uuid.UUID(KEY)) == "01234567-89ab-cdef-0123-456789abcdef"
    assert retry_key("not-hex") == retry_key("not-hex") != retry_key("other")
    uuid.UUID(retry_key("not-hex"))  # still a UUID


@pytest.mark.asyncio
async def test_a_push_is_posted_with_the_token_and_the_retry_key(httpserver):
    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return Response(json.dumps({"sentMessages": [{"id": "461230966842064897", "quoteToken": "IStG5h1Tz7b"}]}),
                        200, headers={"x-line-request-id": "req-8f4a"}, content_type="application/json")

    httpserver.expect_oneshot_request("/v2/bot/message/push", method="POST",
                                      headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_handler(handler)
    t = transport(httpserver)
    result = await t.deliver(request("line", USER, PUSH))
    await t.aclose()
    httpserver.check_assertions()
    assert result.ok and result.provider_id == "req-8f4a"
    assert seen[0].headers["X-Line-Retry-Key"] == "01234567-89ab-cdef-0123-456789abcdef"
    assert seen[0].get_json() == PUSH


@pytest.mark.asyncio
async def test_a_retry_of_an_accepted_request_counts_as_accepted(httpserver):
    httpserver.expect_oneshot_request("/v2/bot/message/push").respond_with_json(
        {"message": "The retry key is already accepted", "sentMessages": [{"id": "461230966842064897"}]}, 409,
        headers={"x-line-request-id": "req-2", "x-line-accepted-request-id": "req-1"})
    t = transport(httpserver)
    result = await t.deliver(request("line", USER, PUSH))
    await t.aclose()
    assert result.ok and result.provider_id == "req-1"


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "body", "headers", "outcome", "unreachable", "retry_after"), [
    (400, {"message": "The request body has 1 error(s)",
           "details": [{"message": "May not be empty", "property": "messages[0].text"}]}, {}, "permanent", False, None),
    (400, {"message": "The request body has 1 error(s)",
           "details": [{"message": "The property, 'to', in the request body is invalid", "property": "to"}]}, {},
     "permanent", True, None),
    (401, {"message": "Authentication failed. Confirm that the access token in the authorization header is valid."},
     {}, "permanent", False, None),
    (429, {"message": "The API rate limit has been exceeded. Try again later."}, {"Retry-After": "3"},
     "transient", False, 3.0),
    (500, {"message": "Internal server error"}, {}, "transient", False, None),
    (409, {"message": "The retry key is already being processed"}, {}, "transient", False, None),
])
async def test_error_answers(httpserver, status, body, headers, outcome, unreachable, retry_after):
    httpserver.expect_oneshot_request("/v2/bot/message/push").respond_with_json(body, status, headers=headers)
    t = transport(httpserver)
    result = await t.deliver(request("line", USER, PUSH))
    await t.aclose()
    assert (result.outcome, result.unreachable, result.retry_after) == (outcome, unreachable, retry_after)
    assert body["message"][:20] in (result.reason or "") and TOKEN not in (result.reason or "")


@pytest.mark.asyncio
async def test_a_payload_without_messages_is_refused_locally(httpserver):
    t = transport(httpserver)
    payload: dict[str, Any] = {"to": USER, "messages": []}
    result = await t.deliver(request("line", USER, payload))
    assert result.outcome == "permanent" and not httpserver.log
