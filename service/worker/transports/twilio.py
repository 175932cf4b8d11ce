"""SMS through an HTTP gateway speaking Twilio's Messages API (the default shape of SMS gateways here).

``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with HTTP basic auth (account SID,
auth token), form fields ``To``, ``From`` (or ``MessagingServiceSid``), ``Body`` and ``StatusCallback``,
and ``I-Twilio-Idempotency-Token`` set to the send's idempotency key (a retried send is not sent twice).

Options: ``account_sid`` and ``auth_token`` (required), ``from`` (default sender when the payload names
none), ``messaging_service_sid``, ``status_callback`` (delivery-receipt URL), and the HTTP options of
:class:`~service.worker.transports.http_common.HttpTransport` (``base_url`` default
``https://api.twilio.com``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret
from service.worker.transports.http_common import Answer, HttpTransport

#: Twilio error codes that say the recipient's number itself cannot get SMS: invalid 'To' number, not a
#: mobile number, the recipient replied STOP (unsubscribed)
UNREACHABLE_CODES = frozenset({21211, 21614, 21610})
_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")


class TwilioTransport(HttpTransport):
    """SMS over Twilio's Messages API (or any gateway with the same shape)."""

    kind = "twilio"
    default_base_url = "https://api.twilio.com"

    def __init__(self, options: Options):
        super().__init__(options)
        self.account_sid: str = options.text("account_sid")
        if not _SID.fullmatch(self.account_sid):
            raise options.error("account_sid", "must be AC followed by 32 hexadecimal digits")
        self.auth_token: Secret = options.secret("auth_token")
        self.sender: str | None = options.text("from", None)
        self.messaging_service_sid: str | None = options.text("messaging_service_sid", None)
        if self.messaging_service_sid is not None and not _SERVICE_SID.fullmatch(self.messaging_service_sid):
            raise options.error("messaging_service_sid", "must be MG followed by 32 hexadecimal digits")
        self.status_callback: str | None = options.url("status_callback", None)

    def secrets(self) -> Iterable[Secret | str | None]:
        """The auth token."""
        return (self.auth_token,)

    def __repr__(self) -> str:
        return f"TwilioTransport(base_url={self.base_url!r}, account_sid={self.account_sid!r})"

    @property
    def url(self) -> str:
        """The Messages resource of the account."""
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    async def deliver(self, request: SendRequest) -> SendResult:
        """POST the message; 201 → accepted (the message SID), 429/5xx → transient, 400 with an unreachable
        code → permanent unreachable, 401 → permanent."""
        text = request.body.get("text")
        if not isinstance(text, str) or not text:
            return SendResult.permanent(f"twilio: the {request.channel} payload has no text")
        sender = request.body.get("from") or self.sender
        form = {"To": request.to, "Body": text}
        if sender:
            form["From"] = str(sender)
        elif self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            return SendResult.permanent("twilio: no sender: the payload has no 'from' and neither 'from' nor "
                                        "'messaging_service_sid' is configured")
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        answer = await self.request("POST", self.url, data=form, auth=(self.account_sid, self.auth_token.reveal()),
                                    headers={"I-Twilio-Idempotency-Token": request.idempotency_key,
                                             "Accept": "application/json"})
        if isinstance(answer, SendResult):
            return answer
        return self.result(answer)

    def result(self, answer: Answer) -> SendResult:
        """The outcome of Twilio's answer."""
        data = answer.json_object()
        if answer.status in (200, 201):
            sid = data.get("sid")
            return SendResult.accepted(sid) if isinstance(sid, str) and sid else self.unreadable(answer)
        code, message = data.get("code"), data.get("message")
        detail = f"error {code}: {message}" if code is not None else answer.snippet()
        if answer.status == 401:
            return SendResult.permanent(self.safe(f"twilio: the account SID and auth token were refused ({detail})"))
        if answer.status == 400 and code in UNREACHABLE_CODES:
            return SendResult.permanent(self.safe(f"twilio: HTTP 400 {detail}"), unreachable=True)
        return self.http_error(answer, detail)
