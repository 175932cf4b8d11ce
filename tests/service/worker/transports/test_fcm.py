"""The FCM HTTP v1 transport against a local server that is both the token endpoint (checking the signed
JWT with the service account's public key) and the messages:send endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug import Request, Response

from service.worker.transports.config import Options
from service.worker.transports.fcm import GRANT_TYPE, SCOPE, FcmTransport

from .conftest import request

PROJECT = "herald-demo"
SEND = f"/v1/projects/{PROJECT}/messages:send"
DEVICE = "fcm-device-token-abc123"
PUSH = {"message": {"token": DEVICE, "notification": {"title": "Sale", "body": "20% off"},
                    "android": {"priority": "high"}, "apns": {"headers": {"apns-priority": "10"},
                                                              "payload": {"aps": {}}},
                    "data": {"deep_link": "myapp://sale"}}}


@pytest.fixture(scope="module")
def keypair() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


class TokenEndpoint:
    """Serves OAuth tokens for a JWT-bearer assertion signed by the expected key; counts the tokens."""

    def __init__(self, public_key: Any, token_uri: str, expires_in: int = 3599, refuse: bool = False):
        self.public_key, self.token_uri, self.expires_in, self.refuse = public_key, token_uri, expires_in, refuse
        self.issued: list[str] = []
        self.claims: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []

    def __call__(self, req: Request) -> Response:
        assert req.form["grant_type"] == GRANT_TYPE
        assertion = req.form["assertion"]
        claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"], audience=self.token_uri)
        self.claims.append(claims)
        self.headers.append(jwt.get_unverified_header(assertion))
        if self.refuse:
            return Response(json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                            400, content_type="application/json")
        token = f"ya29.token-{len(self.issued) + 1}"
        self.issued.append(token)
        return Response(json.dumps({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}),
                        200, content_type="application/json")


class SendEndpoint:
    """messages:send answering a queue of (status, body, headers); records bearer tokens and bodies."""

    def __init__(self, *answers: tuple[int, dict[str, Any], dict[str, str]]):
        self.answers = list(answers)
        self.tokens: list[str] = []
        self.bodies: list[Any] = []

    def __call__(self, req: Request) -> Response:
        self.tokens.append(req.headers.get("Authorization", ""))
        self.bodies.append(req.get_json())
        status, body, headers = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(json.dumps(body), status, headers=headers, content_type="application/json")


def fcm_error(code: int, status: str, message: str, error_code: str | None = None,
              field: str | None = None) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code})
    if field:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": message}]})
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


OK = (200, {"name": f"projects/{PROJECT}/messages/0:1500415314455276%31bd1c9631bd1c96"}, {})


def serve(httpserver, keypair, send: SendEndpoint, **token_options: Any) -> tuple[FcmTransport, TokenEndpoint]:
    pem, public = keypair
    token_uri = httpserver.url_for("/token")
    tokens = TokenEndpoint(public, token_uri, **token_options)
    httpserver.expect_request("/token", method="POST").respond_with_handler(tokens)
    httpserver.expect_request(SEND, method="POST").respond_with_handler(send)
    account = {"type": "service_account", "project_id": PROJECT, "private_key_id": "kid-1", "private_key": pem,
               "client_email": f"herald@{PROJECT}.iam.gserviceaccount.com", "token_uri": token_uri}
    transport = FcmTransport(Options({"service_account": account, "base_url": httpserver.url_for("/")},
                                     "transports.push"))
    return transport, tokens


@pytest.mark.asyncio
async def test_sends_with_a_signed_token_fetched_once(httpserver, keypair):
    send = SendEndpoint(OK)
    t, tokens = serve(httpserver, keypair, send)
    first = await t.deliver(request("push", DEVICE, PUSH))
    second = await t.deliver(request("push", DEVICE, PUSH))
    await t.aclose()
    httpserver.check_assertions()
    assert first.ok and first.provider_id == OK[1]["name"] and second.ok
    assert tokens.issued == ["ya29.token-1"] and send.tokens == ["Bearer ya29.token-1"] * 2
    [claims] = tokens.claims
    assert claims["iss"] == f"herald@{PROJECT}.iam.gserviceaccount.com" and claims["scope"] == SCOPE
    assert claims["exp"] - claims["iat"] == 3600 and tokens.headers[0]["kid"] == "kid-1"
    assert send.bodies[0] == PUSH


@pytest.mark.asyncio
async def test_concurrent_sends_share_one_token_fetch(httpserver, keypair):
    send = SendEndpoint(OK)
    t, tokens = serve(httpserver, keypair, send)
    results = await asyncio.gather(*[t.deliver(request("push", f"{DEVICE}-{i}", PUSH)) for i in range(5)])
    await t.aclose()
    assert all(r.ok for r in results) and len(tokens.issued) == 1
    assert sorted(b["message"]["token"] for b in send.bodies) == sorted(f"{DEVICE}-{i}" for i in range(5))


@pytest.mark.asyncio
async def test_a_token_near_its_expiry_is_fetched_again(httpserver, keypair):
    send = SendEndpoint(OK)
    t, tokens = serve(httpserver, keypair, send, expires_in=1)
    assert (await t.deliver(request("push", DEVICE, PUSH))).ok
    await asyncio.sleep(1.0)
    assert (await t.deliver(request("push", DEVICE, PUSH))).ok
    await t.aclose()
    assert send.tokens == ["Bearer ya29.token-1", "Bearer ya29.token-2"]


@pytest.mark.asyncio
async def test_a_401_refreshes_the_token_once_and_retries(httpserver, keypair):
    send = SendEndpoint((401, fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), {}),
                        OK)
    t, tokens = serve(httpserver, keypair, send)
    result = await t.deliver(request("push", DEVICE, PUSH))
    await t.aclose()
    assert result.ok and send.tokens == ["Bearer ya29.token-1", "Bearer ya29.token-2"]


@pytest.mark.asyncio
async def test_a_second_401_is_permanent(httpserver, keypair):
    send = SendEndpoint((401, fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), {}))
    t, tokens = serve(httpserver, keypair, send)
    result = await t.deliver(request("push", DEVICE, PUSH))
    await t.aclose()
    assert result.outcome == "permanent" and not result.unreachable and len(send.tokens) == 2
    assert len(tokens.issued) == 2 and "ya29" not in (result.reason or "")


@pytest.mark.asyncio
async def test_a_refused_service_account_is_permanent_and_sends_nothing(httpserver, keypair):
    send = SendEndpoint(OK)
    t, _ = serve(httpserver, keypair, send, refuse=True)
    result = await t.deliver(request("push", DEVICE, PUSH))
    await t.aclose()
    assert result.outcome == "permanent" and "invalid_grant" in (result.reason or "") and not send.bodies


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "outcome", "unreachable", "retry_after"), [
    ((404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), {}), "permanent", True, None),
    ((400, fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                     "INVALID_ARGUMENT", "message.token"), {}), "permanent", True, None),
    ((400, fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl'", "INVALID_ARGUMENT",
                     "message.android.ttl"), {}), "permanent", False, None),
    ((403, fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), {}), "permanent", True, None),
    ((429, fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "QUOTA_EXCEEDED"), {"Retry-After": "12"}),
     "transient", False, 12.0),
    ((503, fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"), {"Retry-After": "5"}),
     "transient", False, 5.0),
    ((500, fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"), {}), "transient", False, None),
])
async def test_error_answers(httpserver, keypair, answer, outcome, unreachable, retry_after):
    t, _ = serve(httpserver, keypair, SendEndpoint(answer))
    result = await t.deliver(request("push", DEVICE, PUSH))
    await t.aclose()
    assert (result.outcome, result.unreachable, result.retry_after) == (outcome, unreachable, retry_after)
    assert answer[1]["error"]["message"][:20] in (result.reason or "")
