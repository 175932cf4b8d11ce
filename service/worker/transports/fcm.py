"""Mobile push through Firebase Cloud Messaging HTTP v1.

``POST {base_url}/v1/projects/{project_id}/messages:send`` with ``Authorization: Bearer <access token>``;
the body is the push channel's rendered ``{"message": {...}}``. The access token comes from a service
account: a JWT (RS256, signed with its private key) exchanged at its ``token_uri`` (OAuth 2.0 JWT bearer
grant), cached until shortly before it expires; a 401 refreshes it once and retries.

Options: ``service_account`` (the key file's content: a mapping, or its JSON text, with ``client_email``,
``private_key`` (PEM), ``token_uri`` and optionally ``private_key_id`` and ``project_id``), ``project_id``
(default: the service account's), and the HTTP options (``base_url`` default ``https://fcm.googleapis.com``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret
from service.worker.transports.http_common import Answer, HttpTransport, TokenCache

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
ASSERTION_SECONDS = 3600
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,127}")
_TRANSIENT_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})


class FcmTransport(HttpTransport):
    """Push over FCM HTTP v1 with a service account's OAuth 2.0 access token."""

    kind = "fcm"
    default_base_url = "https://fcm.googleapis.com"

    def __init__(self, options: Options):
        super().__init__(options)
        account = options.raw("service_account")
        where = options.path("service_account")
        if isinstance(account, str):
            try:
                account = json.loads(account)
            except ValueError:
                raise options.error("service_account", "must be the service account's JSON key "
                                    "(a mapping or its JSON text); the text is not JSON") from None
        if not isinstance(account, Mapping):
            raise options.error("service_account", f"must be a mapping, not {type(account).__name__}")
        sa = Options(account, where, env=options.env)
        self.client_email: str = sa.text("client_email")
        pem: Secret = sa.secret("private_key", multiline=True)
        try:
            key = load_pem_private_key(pem.reveal().encode(), password=None)
        except (ValueError, TypeError):
            raise sa.error("private_key", "is not an unencrypted PEM private key (the value is not shown)") from None
        if not isinstance(key, RSAPrivateKey):
            raise sa.error("private_key", "must be an RSA key (RS256)")
        self._key = key
        self.private_key_id: str | None = sa.text("private_key_id", None)
        self.token_uri: str = sa.url("token_uri", DEFAULT_TOKEN_URI)
        account_project = sa.text("project_id", None)
        self.project_id: str = options.text("project_id", account_project)
        if self.project_id is None:
            raise options.error("project_id", "required (the service account names none)")
        if not _PROJECT.fullmatch(self.project_id):
            raise options.error("project_id", f"must be a Google Cloud project id, not {self.project_id!r}")
        self._tokens = TokenCache(default_life=3600.0)

    def secrets(self) -> Iterable[Secret | str | None]:
        """The cached access token."""
        return (self._tokens.current,)

    def __repr__(self) -> str:
        return (f"FcmTransport(base_url={self.base_url!r}, project_id={self.project_id!r}, "
                f"client_email={self.client_email!r})")

    @property
    def url(self) -> str:
        """The project's messages:send endpoint."""
        return f"{self.base_url}/v1/projects/{self.project_id}/messages:send"

    def assertion(self, now: float) -> str:
        """The signed JWT the token endpoint exchanges for an access token."""
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                  "iat": int(now), "exp": int(now) + ASSERTION_SECONDS}
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    async def access_token(self, *, refresh: bool = False) -> str | SendResult:
        """The cached access token, fetched anew when missing, near its expiry or ``refresh`` is set; a
        result when the token endpoint failed."""
        return await self._tokens.get(self._fetch_token, refresh=refresh)

    async def _fetch_token(self, now: float) -> tuple[str, Any] | SendResult:
        answer = await self.request("POST", self.token_uri, data={"grant_type": GRANT_TYPE,
                                                                  "assertion": self.assertion(now)})
        if isinstance(answer, SendResult):
            return answer
        data = answer.json_object()
        token = data.get("access_token")
        if answer.status == 200 and isinstance(token, str) and token:
            return token, data.get("expires_in")
        detail = f"{data.get('error')}: {data.get('error_description', '')}" if data else answer.snippet()
        if answer.status == 200:
            return self.unreadable(answer)
        if answer.status in (408, 429) or answer.status >= 500:
            return SendResult.transient(f"fcm: the token endpoint answered HTTP {answer.status} ({detail})",
                                        answer.retry_after())
        return SendResult.permanent(f"fcm: the token endpoint refused the service account "
                                    f"{self.client_email}: HTTP {answer.status} ({detail})")

    async def deliver(self, request: SendRequest) -> SendResult:
        """POST the message with a bearer token; a 401 refreshes the token and retries once."""
        message = request.body.get("message")
        if not isinstance(message, Mapping):
            return SendResult.permanent(f"fcm: the {request.channel} payload has no 'message' object")
        body = {**request.body, "message": {**message, "token": request.to}}
        for attempt in range(2):
            token = await self.access_token(refresh=attempt > 0)
            if isinstance(token, SendResult):
                return token
            answer = await self.request("POST", self.url, json=body,
                                        headers={"Authorization": f"Bearer {token}"})
            if isinstance(answer, SendResult):
                return answer
            if answer.status != 401 or attempt > 0:
                return self.result(answer)
        raise AssertionError("unreachable")  # pragma: no cover

    def result(self, answer: Answer) -> SendResult:
        """The outcome of FCM's answer (``google.rpc.Status`` errors with ``FcmError`` details)."""
        if answer.status == 200:
            name = answer.json_object().get("name")
            return SendResult.accepted(name) if isinstance(name, str) and name else self.unreadable(answer)
        error = answer.json_object().get("error")
        error = error if isinstance(error, Mapping) else {}
        status, text = str(error.get("status", "")), str(error.get("message", ""))
        codes: set[str] = set()
        fields: set[str] = set()
        for detail in error.get("details") or ():
            if isinstance(detail, Mapping):
                if detail.get("errorCode"):
                    codes.add(str(detail["errorCode"]))
                for violation in detail.get("fieldViolations") or ():
                    if isinstance(violation, Mapping):
                        fields.add(str(violation.get("field", "")))
        label = "/".join(sorted(codes)) or status
        reason = self.safe(f"fcm: HTTP {answer.status} {label}: {text[:300]}" if error
                           else f"fcm: HTTP {answer.status}: {answer.snippet()!r}")
        about_token = "message.token" in fields or "registration token" in text.lower()
        if "UNREGISTERED" in codes or "SENDER_ID_MISMATCH" in codes:
            return SendResult.permanent(reason, unreachable=True)
        if answer.status == 400 and (status == "INVALID_ARGUMENT" or "INVALID_ARGUMENT" in codes) and about_token:
            return SendResult.permanent(reason, unreachable=True)
        if answer.status == 401:
            return SendResult.permanent(f"{reason} (the access token was refused again after a refresh)")
        if codes & _TRANSIENT_CODES or answer.status in (408, 429) or answer.status >= 500:
            return SendResult.transient(reason, answer.retry_after())
        return SendResult.permanent(reason)
