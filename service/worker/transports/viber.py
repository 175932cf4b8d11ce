"""Viber REST bot API messages.

``POST {base_url}/pa/send_message`` with ``X-Viber-Auth-Token``. Viber answers HTTP 200 with a JSON
``status``: 0 is success (``message_token``); the other codes are mapped by :data:`STATUS`.

Options: ``auth_token`` (required) and the HTTP options (``base_url`` default ``https://chatapi.viber.com``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret
from service.worker.transports.http_common import Answer, HttpTransport

Kind = Literal["transient", "permanent", "unreachable"]

#: Viber's documented status codes (REST bot API, "Error codes") → name and what a send should make of it.
#: The receiver's own state (not registered, not subscribed, no device that supports bots) marks the
#: recipient unreachable; rate control and a general error are worth retrying; the rest is the sender's.
STATUS: dict[int, tuple[str, Kind]] = {
    1: ("invalidUrl", "permanent"),
    2: ("invalidAuthToken", "permanent"),
    3: ("badData", "permanent"),
    4: ("missingData", "permanent"),
    5: ("receiverNotRegistered", "unreachable"),
    6: ("receiverNotSubscribed", "unreachable"),
    7: ("publicAccountBlocked", "permanent"),
    8: ("publicAccountNotFound", "permanent"),
    9: ("publicAccountSuspended", "permanent"),
    10: ("webhookNotSet", "permanent"),
    11: ("receiverNoSuitableDevice", "unreachable"),
    12: ("tooManyRequests", "transient"),
    13: ("apiVersionNotSupported", "permanent"),
    14: ("incompatibleWithVersion", "permanent"),
    15: ("publicAccountNotAuthorized", "permanent"),
    16: ("inchatReplyMessageNotAllowed", "permanent"),
    17: ("publicAccountIsNotInline", "permanent"),
    18: ("noPublicChat", "permanent"),
    19: ("cannotSendBroadcast", "permanent"),
    20: ("broadcastNotAllowed", "permanent"),
    21: ("unsupportedCountry", "permanent"),
    22: ("paymentUnsupported", "permanent"),
    23: ("freeMessagesExceeded", "permanent"),
    24: ("noBalance", "permanent"),
}


class ViberTransport(HttpTransport):
    """Viber bot messages."""

    kind = "viber"
    default_base_url = "https://chatapi.viber.com"

    def __init__(self, options: Options):
        super().__init__(options)
        self.auth_token: Secret = options.secret("auth_token")

    def secrets(self) -> Iterable[Secret | str | None]:
        """The auth token."""
        return (self.auth_token,)

    async def deliver(self, request: SendRequest) -> SendResult:
        """POST the message; status 0 → accepted (the message token), else per :data:`STATUS`."""
        if not request.body.get("type"):
            return SendResult.permanent(f"viber: the {request.channel} payload has no message type")
        body = {**request.body, "receiver": request.to}
        answer = await self.request("POST", f"{self.base_url}/pa/send_message", json=body,
                                    headers={"X-Viber-Auth-Token": self.auth_token.reveal()})
        if isinstance(answer, SendResult):
            return answer
        return self.result(answer)

    def result(self, answer: Answer) -> SendResult:
        """The outcome of Viber's answer."""
        if answer.status != 200:
            return self.http_error(answer, answer.snippet())
        data = answer.json_object()
        status = data.get("status")
        if status == 0:
            token = data.get("message_token")
            return SendResult.accepted(str(token)) if token not in (None, "") else self.unreadable(answer)
        if isinstance(status, bool) or not isinstance(status, int):
            return self.unreadable(answer)
        name, kind = STATUS.get(status, ("generalError", "transient"))
        reason = self.safe(f"viber: status {status} {name}: {data.get('status_message', '')}".rstrip(": "))
        if kind == "transient":
            return SendResult.transient(reason, answer.retry_after())
        return SendResult.permanent(reason, unreachable=kind == "unreachable")
