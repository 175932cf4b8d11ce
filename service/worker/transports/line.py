"""LINE Messaging API push messages.

``POST {base_url}/v2/bot/message/push`` with ``Authorization: Bearer <channel access token>`` and
``X-Line-Retry-Key`` (the send's idempotency key as a UUID): LINE answers a retry of an accepted request
with 409 and the first request's id, which counts as accepted.

Options: ``channel_access_token`` (required) and the HTTP options (``base_url`` default
``https://api.line.me``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from engine.contracts import SendRequest, SendResult
from service.worker.transports.config import Options, Secret
from service.worker.transports.http_common import Answer, HttpTransport

#: the namespace of retry keys made from idempotency keys that are not 32 hexadecimal digits
RETRY_KEY_NAMESPACE = uuid.UUID("5d0f4bd4-5f6c-4a57-9d39-5b1f1b0c7a11")


def retry_key(idempotency_key: str) -> str:
    """The idempotency key as the UUID LINE wants: the key itself when it is 32 hex digits, else a UUID5 of
    it (stable: the same key always gives the same UUID)."""
    try:
        return str(uuid.UUID(hex=idempotency_key))
    except ValueError:
        return str(uuid.uuid5(RETRY_KEY_NAMESPACE, idempotency_key))


class LineTransport(HttpTransport):
    """LINE push messages, de-duplicated by the retry key."""

    kind = "line"
    default_base_url = "https://api.line.me"

    def __init__(self, options: Options):
        super().__init__(options)
        self.channel_access_token: Secret = options.secret("channel_access_token")

    def secrets(self) -> Iterable[Secret | str | None]:
        """The channel access token."""
        return (self.channel_access_token,)

    async def deliver(self, request: SendRequest) -> SendResult:
        """POST the push request; 200 → accepted (``x-line-request-id``), 409 on an accepted retry key →
        accepted (the first request's id), 429/5xx → transient, 4xx → permanent."""
        messages = request.body.get("messages")
        if not isinstance(messages, list) or not messages:
            return SendResult.permanent(f"line: the {request.channel} payload has no messages")
        body = {**request.body, "to": request.to}
        answer = await self.request("POST", f"{self.base_url}/v2/bot/message/push", json=body, headers={
            "Authorization": f"Bearer {self.channel_access_token.reveal()}",
            "X-Line-Retry-Key": retry_key(request.idempotency_key)})
        if isinstance(answer, SendResult):
            return answer
        return self.result(answer)

    def result(self, answer: Answer) -> SendResult:
        """The outcome of LINE's answer."""
        data = answer.json_object()
        if answer.status == 200:
            request_id = answer.headers.get("x-line-request-id")
            if not request_id:
                sent = data.get("sentMessages")
                first = sent[0] if isinstance(sent, list) and sent and isinstance(sent[0], Mapping) else {}
                request_id = first.get("id")
            return SendResult.accepted(str(request_id)) if request_id else self.unreadable(answer)
        message = str(data.get("message", "")) or answer.snippet()
        details = [d for d in data.get("details") or () if isinstance(d, Mapping)]
        detail = "; ".join(f"{d.get('property')}: {d.get('message')}" for d in details)
        reason = self.safe(f"line: HTTP {answer.status}: {message}{' (' + detail + ')' if detail else ''}")
        if answer.status == 409:
            accepted = answer.headers.get("x-line-accepted-request-id")
            if accepted:
                return SendResult.accepted(accepted)  # a retry of a request LINE already took
            return SendResult.transient(reason)  # the first request is still being processed
        if answer.status == 400 and any(d.get("property") == "to" for d in details):
            return SendResult.permanent(reason, unreachable=True)
        if answer.status == 401:
            return SendResult.permanent(f"{reason} (the channel access token was refused)")
        if answer.status == 429 or answer.status >= 500:
            return SendResult.transient(reason, answer.retry_after())
        return SendResult.permanent(reason)
