"""Delivery receipts: ``POST /api/v1/webhooks/{provider}`` (public: authenticated by the provider's
signature, not by an API key) and ``PUT /api/v1/org/webhooks/{provider}`` (admins set their org's secret).

Providers:

* ``twilio`` — a form (``MessageSid``, ``MessageStatus``, ``ErrorCode``), signed in ``X-Twilio-Signature``:
  base64 HMAC-SHA1, under the account's auth token, of the full URL followed by every form key and value
  sorted by key. Status: delivered → delivered, read → opened, undelivered → bounced (hard for 30005 unknown
  handset and 30006 landline), failed → failed; others are stored and move nothing.
* ``sendgrid`` — a JSON array of events (``sg_event_id``, ``event``, ``sg_message_id`` or the custom arg
  ``herald_provider_id``, ``timestamp``), signed by SendGrid's Signed Event Webhook: an ECDSA P-256 /
  SHA-256 signature (``X-Twilio-Email-Event-Webhook-Signature``, base64 DER) of the
  ``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw body, checked with the
  verification key (the base64 public key SendGrid shows). delivered, bounce (hard unless ``type`` is
  ``blocked``), dropped → failed, open → opened, click → clicked; spamreport, unsubscribe and
  group_unsubscribe record the customer ``unsubscribed`` on the channel.
* ``herald`` — ``{"events": [{"id", "provider_id", "status", "at", "error"?, "bounce"?}]}``, signed
  ``X-Herald-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body under the org's secret. ``status`` is
  delivered, bounced (``bounce``: ``hard`` — the default — or ``soft``), failed, opened or clicked.

The org is found from the provider id of the delivery; the request must verify with that org's secret (401
otherwise, nothing changed). Events whose provider id no delivery has are counted as ``unmatched`` and
ignored. Each event is stored once (a provider's retry is a no-op) and never moves a delivery backwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import anyio
import msgspec
from litestar import Request, post, put
from litestar.params import FromPath, JSONBody

from service.http.auth import ADMINS
from service.http.deps import Caller, Db, DbDep
from service.http.problems import Problem, error, unprocessable
from service.storage.receipts import (
    PROVIDERS,
    Receipt,
    apply_receipts,
    orgs_by_provider_id,
    secrets_of,
    set_secret,
)
from service.storage.sealing import SealingError

#: the largest receipt body read (413 beyond)
MAX_BODY = 1024 * 1024
#: the most events one request may carry
MAX_EVENTS = 1000
#: the longest id (event or provider) kept
MAX_ID = 200
SECRET_MIN, SECRET_MAX = 16, 4096
TWILIO_STATUS = {"delivered": "delivered", "read": "opened", "undelivered": "bounced", "failed": "failed"}
TWILIO_HARD = {"30005", "30006"}
SENDGRID_STATUS = {"delivered": "delivered", "bounce": "bounced", "dropped": "failed", "open": "opened",
                   "click": "clicked", "spamreport": "unsubscribed", "unsubscribe": "unsubscribed",
                   "group_unsubscribe": "unsubscribed"}
HERALD_STATUS = ("delivered", "bounced", "failed", "opened", "clicked")
SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


def bad_request(detail: str, path: str, code: str = "invalid") -> Problem:
    """400 for a body that cannot be read, naming the place."""
    return Problem(400, detail, [error(path, code, detail)], code="bad_request")


async def read_body(request: Request[Any, Any, Any], limit: int = MAX_BODY) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"a receipt body is at most {limit} bytes", code="too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"a receipt body is at most {limit} bytes", code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _text(value: Any, path: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise unprocessable(f"{path} is required text", [error(path, "required", f"{path} must be non-empty text")])
    if len(value) > MAX_ID:
        raise unprocessable(f"{path} is too long", [error(path, "too_long", f"{path} is at most {MAX_ID} characters")])
    return value.strip()


def _bounded(n: int, path: str) -> None:
    if n > MAX_EVENTS:
        raise Problem(413, f"at most {MAX_EVENTS} events per request", [error(path, "too_many", f"{n} events")],
                      code="too_large")


# -- signatures -----------------------------------------------------------------------------------------


def twilio_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature`` of a form POST to ``url``."""
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def herald_signature(secret: str, body: bytes) -> str:
    """The ``X-Herald-Signature`` value of a body: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of a computed signature with the one a request carries (any characters)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def sendgrid_key(secret: str) -> Any:
    """The ECDSA public key of a SendGrid verification key (base64 DER, or PEM); ValueError when it is not one."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    text = secret.strip()
    try:
        key = (load_pem_public_key(text.encode()) if text.startswith("-----BEGIN")
               else load_der_public_key(base64.b64decode(text, validate=True)))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"not a public key: {type(exc).__name__}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (ECDSA) public key")
    return key


def sendgrid_verifies(secret: str, signature: str, timestamp: str, body: bytes) -> bool:
    """Whether SendGrid's signature of ``timestamp + body`` verifies with the verification key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = sendgrid_key(secret)
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


def _urls(request: Request[Any, Any, Any]) -> list[str]:
    """The URL Twilio called: as this server saw it, and as a proxy in front says (``X-Forwarded-*``)."""
    seen = str(request.url)
    out = [seen]
    proto, host = request.headers.get("x-forwarded-proto"), request.headers.get("x-forwarded-host")
    if proto or host:
        u = request.url
        rebuilt = f"{(proto or u.scheme).split(',')[0].strip()}://{(host or u.netloc).split(',')[0].strip()}{u.path}"
        out.append(rebuilt + (f"?{u.query}" if u.query else ""))
    return out


# -- parsing --------------------------------------------------------------------------------------------


def _when(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str) and len(value) <= 64:
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return t if t.tzinfo else t.replace(tzinfo=UTC)
        except ValueError:
            pass
    raise unprocessable(f"{path} is not a time", [error(path, "invalid", "an ISO 8601 time or Unix seconds")])


def parse_twilio(body: bytes) -> tuple[list[tuple[str, str]], Receipt]:
    """The form's pairs and its receipt (event id: message SID and status, as Twilio sends each once)."""
    try:
        params = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the body is not a URL-encoded form ({exc})", "", "not_a_form") from None
    form = dict(params)
    sid = _text(form.get("MessageSid") or form.get("SmsSid"), "MessageSid")
    status = _text(form.get("MessageStatus") or form.get("SmsStatus"), "MessageStatus")
    assert sid is not None and status is not None
    code = (form.get("ErrorCode") or "").strip()
    mapped = TWILIO_STATUS.get(status.lower(), status.lower()[:20])
    return params, Receipt(f"{sid}:{status.lower()}", sid, mapped, datetime.now(UTC),
                           error=f"Twilio error {code}" if code else None,
                           hard=mapped == "bounced" and code in TWILIO_HARD)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the body is not JSON: {exc}", "", "not_json") from None


def parse_sendgrid(body: bytes) -> list[Receipt]:
    """SendGrid's events (a JSON array) as receipts."""
    events = _json(body)
    if not isinstance(events, list):
        raise unprocessable("SendGrid posts a JSON array of events", [error("", "type", "an array of events")])
    _bounded(len(events), "")
    out = []
    for i, e in enumerate(events):
        at = f"/{i}"
        if not isinstance(e, dict):
            raise unprocessable(f"event {i} is not an object", [error(at, "type", "an event object")])
        event_id = _text(e.get("sg_event_id"), f"{at}/sg_event_id")
        kind = _text(e.get("event"), f"{at}/event")
        custom = e.get("herald_provider_id")
        if custom is not None:
            pid = _text(custom, f"{at}/herald_provider_id")
        else:
            raw = _text(e.get("sg_message_id"), f"{at}/sg_message_id")
            assert raw is not None
            pid = raw.split(".filter", 1)[0]
        assert event_id is not None and kind is not None and pid is not None
        status = SENDGRID_STATUS.get(kind, kind[:20])
        reason = e.get("reason") or e.get("response")
        out.append(Receipt(event_id, pid, status, _when(e.get("timestamp"), f"{at}/timestamp"),
                           error=str(reason)[:500] if reason else None,
                           hard=status == "bounced" and e.get("type", "bounce") != "blocked"))
    return out


def parse_herald(body: bytes) -> list[Receipt]:
    """The generic batch ``{"events": [...]}`` as receipts."""
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise unprocessable("the body is {\"events\": [...]}", [error("/events", "required", "a list of events")])
    _bounded(len(doc["events"]), "/events")
    out = []
    for i, e in enumerate(doc["events"]):
        at = f"/events/{i}"
        if not isinstance(e, dict):
            raise unprocessable(f"event {i} is not an object", [error(at, "type", "an event object")])
        event_id = _text(e.get("id"), f"{at}/id")
        pid = _text(e.get("provider_id"), f"{at}/provider_id")
        status = e.get("status")
        if status not in HERALD_STATUS:
            raise unprocessable(f"{at}/status is not a known status",
                                [error(f"{at}/status", "invalid", f"one of {', '.join(HERALD_STATUS)}")])
        bounce = e.get("bounce", "hard")
        if bounce not in ("hard", "soft"):
            raise unprocessable(f"{at}/bounce is hard or soft", [error(f"{at}/bounce", "invalid", "hard or soft")])
        when = _when(e.get("at"), f"{at}/at")
        if when is None:
            raise unprocessable(f"{at}/at is required", [error(f"{at}/at", "required", "the event's time")])
        err = e.get("error")
        if err is not None and not isinstance(err, str):
            raise unprocessable(f"{at}/error is text", [error(f"{at}/error", "type", "text")])
        assert event_id is not None and pid is not None
        out.append(Receipt(event_id, pid, status, when, error=err[:500] if err else None,
                           hard=status == "bounced" and bounce == "hard"))
    return out


# -- the endpoint ---------------------------------------------------------------------------------------


def _process(db: Db, provider: str, receipts: list[Receipt], verifies: Any) -> dict[str, int]:
    """Find each receipt's org(s), check the request against each org's secret, then apply (one transaction;
    a 401 changes nothing)."""
    with db.tx() as s:
        orgs = orgs_by_provider_id(s, [r.provider_id for r in receipts])
        secrets = secrets_of(s, {o for found in orgs.values() for o in found}, provider, db.sealer)
        verified = {org for org, secret in secrets.items() if verifies(secret)}
        pairs: list[tuple[int, Receipt]] = []
        unmatched = 0
        for r in receipts:
            found = orgs.get(r.provider_id, set())
            if not found:
                unmatched += 1
                continue
            ok = found & verified
            if not ok:
                raise Problem(401, f"the {provider} signature does not verify with the secret of the org this "
                              f"receipt belongs to (set it with PUT /api/v1/org/webhooks/{provider})",
                              code="bad_signature")
            pairs += [(org, r) for org in sorted(ok)]
        tally = apply_receipts(s, provider, pairs)
    tally["unmatched"] += unmatched
    return {"received": len(receipts), **tally}


@post("/webhooks/{provider:str}", operation_id="receiveReceipts", tags=["webhooks"], status_code=200,
            security=[])
async def receive(provider: FromPath[str], request: Request[Any, Any, Any], db: DbDep) -> dict[str, int]:
    """Delivery receipts from ``twilio``, ``sendgrid`` or ``herald`` (see the module's documentation):
    verified with the org's secret (401 otherwise, nothing changed), each event applied once. Answers the
    counts: received, applied, unchanged, duplicates, unmatched."""
    if provider not in PROVIDERS:
        raise Problem(404, f"no receipt provider {provider!r}; known: {', '.join(PROVIDERS)}", code="not_found")
    body = await read_body(request)
    if provider == "twilio":
        given = request.headers.get("x-twilio-signature", "")
        params, receipt = parse_twilio(body)
        urls = _urls(request)
        receipts = [receipt]

        def verifies(secret: str) -> bool:
            return any(same(twilio_signature(secret, u, params), given) for u in urls)
    elif provider == "sendgrid":
        signature, stamp = request.headers.get(SENDGRID_SIGNATURE, ""), request.headers.get(SENDGRID_TIMESTAMP, "")
        receipts = parse_sendgrid(body)

        def verifies(secret: str) -> bool:
            return bool(signature and stamp) and sendgrid_verifies(secret, signature, stamp, body)
    else:
        given = request.headers.get("x-herald-signature", "")
        receipts = parse_herald(body)

        def verifies(secret: str) -> bool:
            return same(herald_signature(secret, body), given)
    try:
        return await anyio.to_thread.run_sync(partial(_process, db, provider, receipts, verifies))
    except SealingError as exc:  # the org's secret is stored but this deployment cannot open it
        raise Problem(503, f"receipts cannot be checked: {exc}", code="no_secret_key") from None


class SecretIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A provider secret: the Twilio auth token, the SendGrid verification key, or the HMAC key of herald
    receipts (never shown again)."""

    secret: str


@put("/org/webhooks/{provider:str}", operation_id="setWebhookSecret", tags=["webhooks"], guards=[ADMINS],
     status_code=204, sync_to_thread=True)
def set_webhook_secret(provider: FromPath[str], data: JSONBody[SecretIn], caller: Caller, db: DbDep) -> None:
    """Set the org's secret for a receipt provider (204; secrets are never returned). 404 for an unknown
    provider; 422 for a secret that cannot be one."""
    if provider not in PROVIDERS:
        raise Problem(404, f"no receipt provider {provider!r}; known: {', '.join(PROVIDERS)}", code="not_found")
    secret = data.secret.strip()
    if not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise unprocessable("the secret has the wrong length",
                            [error("/secret", "length", f"{SECRET_MIN} to {SECRET_MAX} characters")])
    if provider == "sendgrid":
        try:
            sendgrid_key(secret)
        except ValueError as exc:
            raise unprocessable("the SendGrid verification key is not an ECDSA public key",
                                [error("/secret", "invalid", str(exc))]) from None
    try:
        with db.tx() as s:
            set_secret(s, caller.org_id, provider, secret, db.sealer)
    except SealingError as exc:
        raise Problem(503, f"secrets cannot be stored: {exc}", code="no_secret_key") from None


HANDLERS = [receive, set_webhook_secret]
