"""The Twilio-style SMS transport against a local HTTP server answering Twilio's real shapes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from werkzeug import Request, Response

from service.worker.transports.config import Options
from service.worker.transports.twilio import TwilioTransport

from .conftest import KEY, request

SID = "AC" + "a1" * 16
TOKEN = "twilio-auth-token-123"
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
BASIC = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
SMS = {"to": "+15558675310", "from": "HERALD", "text": "Sale! 20% off. Reply STOP to opt out",
       "encoding": "GSM-7", "units": 36, "segments": 1}


def transport(httpserver, **options: Any) -> TwilioTransport:
    return TwilioTransport(Options({"account_sid": SID, "auth_token": TOKEN,
                                    "base_url": httpserver.url_for("/"), **options}, "transports.sms"))


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


@pytest.mark.asyncio
async def test_a_message_is_posted_as_twilio_wants_it(httpserver):
    seen: list[Request] = []

    def handler(req: Request) -> Response:
        seen.append(req)
        return Response('{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}', 201,
                        content_type="application/json")

    httpserver.expect_oneshot_request(PATH, method="POST", headers={"Authorization": BASIC}).respond_with_handler(handler)
    t = transport(httpserver, status_callback="https://herald.example/hooks/twilio")
    result = await t.deliver(request("sms", "+15558675310", SMS))
    await t.aclose()
    httpserver.check_assertions()
    assert result.ok and result.provider_id == "SM0123456789abcdef0123456789abcdef"
    [req] = seen
    assert req.headers["I-Twilio-Idempotency-Token"] == KEY
    assert req.content_type.startswith("application/x-www-form-urlencoded")
    assert req.form.to_dict() == {"To": "+15558675310", "From": "HERALD", "Body": SMS["text"],
                                  "StatusCallback": "https://herald.example/hooks/twilio"}


@pytest.mark.asyncio
async def test_the_messaging_service_stands_in_for_a_missing_sender(httpserver):
    service = "MG" + "b2" * 16
    httpserver.expect_oneshot_request(PATH, method="POST", data=None).respond_with_json({"sid": "SM1"}, 201)
    t = transport(httpserver, messaging_service_sid=service)
    result = await t.deliver(request("sms", "+15558675310", {**SMS, "from": None}))
    await t.aclose()
    assert result.ok
    form = httpserver.log[0][0].form
    assert form["MessagingServiceSid"] == service and "From" not in form


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "body", "headers", "outcome", "unreachable", "retry_after"), [
    (400, twilio_error(400, 21211, "The 'To' number +1555 is not a valid phone number."), {}, "permanent", True, None),
    (400, twilio_error(400, 21614, "'To' number is not a valid mobile number"), {}, "permanent", True, None),
    (400, twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"), {}, "permanent", True, None),
    (400, twilio_error(400, 21606, "The 'From' phone number provided is not a valid message-capable number"), {},
     "permanent", False, None),
    (401, twilio_error(401, 20003, "Authenticate"), {}, "permanent", False, None),
    (429, twilio_error(429, 20429, "Too Many Requests"), {"Retry-After": "7"}, "transient", False, 7.0),
    (500, twilio_error(500, 20500, "Internal Server Error"), {}, "transient", False, None),
    (503, twilio_error(503, 20503, "Service Unavailable"), {"Retry-After": "30"}, "transient", False, 30.0),
])
async def test_answers(httpserver, status, body, headers, outcome, unreachable, retry_after):
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_json(body, status, headers=headers)
    t = transport(httpserver)
    result = await t.deliver(request("sms", "+15558675310", SMS))
    await t.aclose()
    assert (result.outcome, result.unreachable, result.retry_after) == (outcome, unreachable, retry_after)
    assert str(body["code"]) in (result.reason or "") and TOKEN not in (result.reason or "")


@pytest.mark.asyncio
async def test_no_sender_anywhere_is_refused_without_a_request(httpserver):
    t = transport(httpserver)
    result = await t.deliver(request("sms", "+15558675310", {**SMS, "from": None}))
    assert result.outcome == "permanent" and "sender" in (result.reason or "") and not httpserver.log


def test_the_repr_hides_the_token(httpserver):
    assert TOKEN not in repr(transport(httpserver)) and SID in repr(transport(httpserver))
