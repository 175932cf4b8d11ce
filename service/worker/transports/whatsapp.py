"""WhatsApp Cloud API template messages.

``POST {base_url}/{api_version}/{phone_number_id}/messages`` with ``Authorization: Bearer <access token>``;
the body is the WhatsApp channel's rendered request (``messaging_product``, ``to``, ``type: template``,
``template``). Errors are Graph API ``error`` objects whose ``code`` decides the outcome.

Options: ``access_token`` and ``phone_number_id`` (required), ``api_version`` (default ``v21.0``) and the
HTTP options (``base_url`` default ``https://graph.facebook.com``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret
from service.worker.transports.http_common import Answer, HttpTransport

#: the recipient cannot get the message: undeliverable (131026, e.g. not a WhatsApp user), the recipient
#: is the sender (131021)
UNREACHABLE_CODES = frozenset({131026, 131021})
#: throttling (130429 throughput, 131056 pair rate, 80007 and 4 rate limits) and Meta's own trouble (1, 2,
#: 131000 something went wrong, 131016 service unavailable)
TRANSIENT_CODES = frozenset({130429, 131056, 80007, 4, 1, 2, 131000, 131016})
_VERSION = re.compile(r"v\d{1,3}\.\d{1,3}")
_PHONE_ID = re.compile(r"\d{1,32}")


class WhatsAppTransport(HttpTransport):
    """WhatsApp template messages over the Cloud API."""

    kind = "whatsapp"
    default_base_url = "https://graph.facebook.com"

    def __init__(self, options: Options):
        super().__init__(options)
        self.access_token: Secret = options.secret("access_token")
        self.phone_number_id: str = str(options.raw("phone_number_id"))
        if not _PHONE_ID.fullmatch(self.phone_number_id):
            raise options.error("phone_number_id", "must be the numeric id of the business phone number")
        self.api_version: str = options.text("api_version", "v21.0")
        if not _VERSION.fullmatch(self.api_version):
            raise options.error("api_version", f"must look like v21.0, not {self.api_version!r}")

    def secrets(self) -> Iterable[Secret | str | None]:
        """The access token."""
        return (self.access_token,)

    def __repr__(self) -> str:
        return (f"WhatsAppTransport(base_url={self.base_url!r}, api_version={self.api_version!r}, "
                f"phone_number_id={self.phone_number_id!r})")

    @property
    def url(self) -> str:
        """The phone number's messages endpoint."""
        return f"{self.base_url}/{self.api_version}/{self.phone_number_id}/messages"

    async def deliver(self, request: SendRequest) -> SendResult:
        """POST the message; 200 → accepted (``messages[0].id``), else per the Graph API error code."""
        kind = request.body.get("type")
        if not kind or (kind == "template" and not isinstance(request.body.get("template"), Mapping)):
            return SendResult.permanent(f"whatsapp: the {request.channel} payload has no message type or template")
        body = {"messaging_product": "whatsapp", **request.body, "to": request.to}
        answer = await self.request("POST", self.url, json=body,
                                    headers={"Authorization": f"Bearer {self.access_token.reveal()}"})
        if isinstance(answer, SendResult):
            return answer
        return self.result(answer)

    def result(self, answer: Answer) -> SendResult:
        """The outcome of the Cloud API's answer."""
        data = answer.json_object()
        if answer.status == 200:
            messages = data.get("messages")
            first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], Mapping) else {}
            wamid = first.get("id")
            return SendResult.accepted(str(wamid)) if wamid else self.unreadable(answer)
        error = data.get("error")
        if not isinstance(error, Mapping):
            return self.http_error(answer, answer.snippet())
        code = error.get("code")
        details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), Mapping) else None
        reason = self.safe(f"whatsapp: HTTP {answer.status} error {code}: {error.get('message', '')}"
                           f"{' (' + str(details)[:300] + ')' if details else ''}")
        if code in UNREACHABLE_CODES:
            return SendResult.permanent(reason, unreachable=True)
        if code == 190:
            return SendResult.permanent(f"{reason} (the access token is invalid or expired)")
        if code in TRANSIENT_CODES or answer.status in (429, 503) or answer.status >= 500:
            return SendResult.transient(reason, answer.retry_after())
        return SendResult.permanent(reason)
