"""Delivery receipts: each provider's signature accepted and refused (401, nothing changed), an event stored
once (a retry is a no-op), a delivery never moved backwards, a hard bounce marking the customer, the org
found from the delivery's provider id (another org's secret never works), malformed bodies named, sizes
bounded, secrets set by admins and never shown."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import TestClient
from sqlalchemy import Engine
from sqlmodel import func, select

from service.storage.db import transaction
from service.storage.sealing import Sealer
from service.storage.tables import Customer, Delivery, ReceiptEvent, WebhookSecret
from service.worker import runs
from service.worker.context import WorkerContext
from tests.service.conftest import TEST_SECRET_KEYS, make_org
from tests.service.test_links import decide, email_only, send_all, signed_app_client, worker_context
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import deliveries

HOOKS = f"{API}/webhooks"
HERALD_SECRET = "receipts-secret-0123456789abcdef"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def ctx(db_engine: Engine) -> Iterator[WorkerContext]:
    """The worker's steps' context (without DBOS)."""
    yield from worker_context(db_engine)


@pytest.fixture
def signed_client(database_url: str, db_engine: Engine, ctx: WorkerContext) -> Iterator[TestClient]:
    """A client of the app with the worker's signed e-mail channel."""
    yield from signed_app_client(database_url, db_engine, ctx)


def herald_post(client: Any, events: list[dict[str, Any]], secret: str = HERALD_SECRET, **kw: Any) -> Any:
    body = json.dumps({"events": events}).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(f"{HOOKS}/herald", content=body, headers={"X-Herald-Signature": sig,
                                                                  "Content-Type": "application/json"}, **kw)


def sent_run(ctx: Any, client: Any, db_engine: Any, org: Any, n: int, *, email: bool = True) -> dict[str, Delivery]:
    """A run of ``n`` recipients, sent through the log transport: customer → delivery (provider ids set)."""
    _, run_id = decide(ctx, client, db_engine, org, n, edit=email_only(client, org) if email else None)
    assert send_all(ctx, run_id) == {"sent": n}
    runs.finish(ctx, run_id)
    rows = {d.customer: d for d in deliveries(db_engine, run_id)}
    assert all(d.provider_id for d in rows.values())
    return rows


def statuses(db_engine: Any, rows: dict[str, Delivery]) -> dict[str, str]:
    with transaction(db_engine) as s:
        return {d.customer: s.exec(select(Delivery.status).where(Delivery.id == d.id)).one() for d in rows.values()}


def subscription(db_engine: Any, org: Any, customer: str, channel: str) -> str | None:
    with transaction(db_engine) as s:
        c = s.exec(select(Customer).where(Customer.org_id == org.org_id, Customer.external_id == customer)).one()
        return (c.subscriptions or {}).get(channel)


def events_of(db_engine: Any, org: Any) -> int:
    with transaction(db_engine) as s:
        return s.exec(select(func.count()).select_from(ReceiptEvent).where(ReceiptEvent.org_id == org.org_id)).one()


def set_secret(client: Any, org: Any, provider: str, secret: str) -> None:
    r = client.put(f"{API}/org/webhooks/{provider}", json={"secret": secret}, headers=org.headers("admin"))
    assert r.status_code == 204, r.text


def test_herald_receipts_move_deliveries_forward_once_and_a_hard_bounce_marks_the_customer(
        ctx, signed_client, db_engine, org):
    client = signed_client
    rows = sent_run(ctx, client, db_engine, org, 4)
    set_secret(client, org, "herald", HERALD_SECRET)
    pid = {c: d.provider_id for c, d in rows.items()}
    at = "2026-07-04T19:05:00+05:30"
    batch = [{"id": "e1", "provider_id": pid["c0000"], "status": "delivered", "at": at},
             {"id": "e2", "provider_id": pid["c0001"], "status": "opened", "at": at},
             {"id": "e3", "provider_id": pid["c0002"], "status": "bounced", "at": at, "error": "550 no such user"},
             {"id": "e4", "provider_id": "no-such-provider-id", "status": "delivered", "at": at}]
    r = herald_post(client, batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 4, "applied": 3, "unchanged": 0, "duplicates": 0, "unmatched": 1}
    assert statuses(db_engine, rows) == {"c0000": "delivered", "c0001": "opened", "c0002": "bounced", "c0003": "sent"}
    assert subscription(db_engine, org, "c0002", "email") == "hard_bounced"
    assert subscription(db_engine, org, "c0000", "email") is None

    again = herald_post(client, batch)  # the provider retried the whole batch
    assert again.json() == {"received": 4, "applied": 0, "unchanged": 0, "duplicates": 3, "unmatched": 1}
    assert events_of(db_engine, org) == 3

    late = [{"id": "e5", "provider_id": pid["c0001"], "status": "delivered", "at": at},  # after opened
            {"id": "e6", "provider_id": pid["c0000"], "status": "clicked", "at": at},
            {"id": "e7", "provider_id": pid["c0000"], "status": "opened", "at": at},  # after clicked
            {"id": "e8", "provider_id": pid["c0003"], "status": "bounced", "bounce": "soft", "at": at}]
    assert herald_post(client, late).json() == {"received": 4, "applied": 2, "unchanged": 2, "duplicates": 0,
                                                "unmatched": 0}
    assert statuses(db_engine, rows) == {"c0000": "clicked", "c0001": "opened", "c0002": "bounced", "c0003": "bounced"}
    assert subscription(db_engine, org, "c0003", "email") is None  # a soft bounce does not mark the address
    with transaction(db_engine) as s:
        bounced = s.exec(select(Delivery).where(Delivery.id == rows["c0002"].id)).one()
        assert bounced.errors[-1]["reason"] == "550 no such user" and bounced.errors[-1]["receipt"] == "e3"


def test_a_bad_signature_or_another_orgs_secret_is_401_and_changes_nothing(ctx, signed_client, db_engine, org):
    client = signed_client
    rows = sent_run(ctx, client, db_engine, org, 1)
    pid = rows["c0000"].provider_id
    event = [{"id": "x1", "provider_id": pid, "status": "delivered", "at": "2026-07-04T13:35:00Z"}]
    r = herald_post(client, event)  # the org has set no secret yet
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    set_secret(client, org, "herald", HERALD_SECRET)
    assert herald_post(client, event, secret="not-the-secret-0123456789").status_code == 401
    body = json.dumps({"events": event}).encode()
    assert client.post(f"{HOOKS}/herald", content=body).status_code == 401  # unsigned
    assert client.post(f"{HOOKS}/herald", content=body, headers={"X-Herald-Signature": b"sha256=\xe9\xe9"}).status_code == 401
    intruder = make_org(db_engine)
    set_secret(client, intruder, "herald", "intruders-own-secret-0123456789")
    assert herald_post(client, event, secret="intruders-own-secret-0123456789").status_code == 401
    assert statuses(db_engine, rows) == {"c0000": "sent"} and events_of(db_engine, org) == 0
    assert herald_post(client, event).status_code == 200
    assert statuses(db_engine, rows) == {"c0000": "delivered"}


def test_malformed_receipts_are_named_and_bounded_and_unknown_providers_are_404(signed_client, org):
    client = signed_client
    at = "2026-07-04T13:35:00Z"
    r = herald_post(client, [{"id": "a", "status": "delivered", "at": at}])
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/events/0/provider_id"
    r = herald_post(client, [{"id": "a", "provider_id": "p", "status": "lost", "at": at}])
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/events/0/status"
    r = herald_post(client, [{"id": "a", "provider_id": "p", "status": "delivered", "at": "yesterday"}])
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/events/0/at"
    r = client.post(f"{HOOKS}/herald", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    r = client.post(f"{HOOKS}/sendgrid", content=json.dumps([{"event": "delivered"}]).encode())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/0/sg_event_id"
    r = client.post(f"{HOOKS}/twilio", content=urlencode({"MessageStatus": "delivered"}).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "MessageSid"
    many = [{"id": str(i), "provider_id": "p", "status": "delivered", "at": at} for i in range(1001)]
    assert herald_post(client, many).status_code == 413
    assert client.post(f"{HOOKS}/herald", content=b"x" * (1024 * 1024 + 1)).status_code == 413
    assert client.post(f"{HOOKS}/mailgun", content=b"{}").status_code == 404
    r = client.put(f"{API}/org/webhooks/mailgun", json={"secret": HERALD_SECRET}, headers=org.headers("admin"))
    assert r.status_code == 404


def test_secrets_are_set_by_admins_only_validated_and_never_returned(signed_client, db_engine, org):
    client = signed_client
    url = f"{API}/org/webhooks/herald"
    assert client.put(url, json={"secret": HERALD_SECRET}, headers=org.headers("marketer")).status_code == 403
    assert client.put(url, json={"secret": HERALD_SECRET}).status_code == 401
    r = client.put(url, json={"secret": "short"}, headers=org.headers("admin"))
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/secret"
    r = client.put(f"{API}/org/webhooks/sendgrid", json={"secret": "not-a-public-key-at-all"},
                   headers=org.headers("admin"))
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/secret"
    r = client.put(url, json={"secret": HERALD_SECRET}, headers=org.headers("admin"))
    assert r.status_code == 204 and r.content == b"" and HERALD_SECRET not in r.text
    set_secret(client, org, "herald", HERALD_SECRET + "-rotated")
    with transaction(db_engine) as s:
        kept = s.exec(select(WebhookSecret).where(WebhookSecret.org_id == org.org_id)).all()
    assert [(k.provider, Sealer(TEST_SECRET_KEYS).unseal(k.secret)) for k in kept] == [("herald", HERALD_SECRET + "-rotated")]


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's documented algorithm, written out independently of the service's."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_twilio_status_callbacks_are_verified_and_an_unknown_handset_marks_the_number(
        ctx, signed_client, db_engine, org):
    client = signed_client
    rows = sent_run(ctx, client, db_engine, org, 2, email=False)
    assert {d.channel for d in rows.values()} == {"sms"}
    set_secret(client, org, "twilio", TWILIO_TOKEN)
    url = "http://testserver.local/api/v1/webhooks/twilio"

    def callback(params: dict[str, str], token: str = TWILIO_TOKEN) -> Any:
        return client.post(f"{HOOKS}/twilio", content=urlencode(params).encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "X-Twilio-Signature": twilio_signature(token, url, params)})

    ok_params = {"MessageSid": rows["c0000"].provider_id or "", "MessageStatus": "delivered", "AccountSid": "AC1",
                 "To": "+919800000000", "From": "HERALD"}
    forged = callback(ok_params, token="ffffffffffffffffffffffffffffffff")
    assert forged.status_code == 401 and statuses(db_engine, rows)["c0000"] == "sent"
    tampered = dict(ok_params)
    r = client.post(f"{HOOKS}/twilio", content=urlencode({**tampered, "MessageStatus": "read"}).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded",
                             "X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, ok_params)})
    assert r.status_code == 401  # a field changed after signing
    assert ok(callback(ok_params))["applied"] == 1
    assert ok(callback(ok_params))["duplicates"] == 1  # Twilio's retry of the same status
    dead = {"MessageSid": rows["c0001"].provider_id or "", "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert ok(callback(dead))["applied"] == 1
    assert statuses(db_engine, rows) == {"c0000": "delivered", "c0001": "bounced"}
    assert subscription(db_engine, org, "c0001", "sms") == "hard_bounced"
    queued = {"MessageSid": rows["c0000"].provider_id or "", "MessageStatus": "sent"}
    assert ok(callback(queued)) == {"received": 1, "applied": 0, "unchanged": 1, "duplicates": 0, "unmatched": 0}


@pytest.fixture(scope="module")
def sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair like SendGrid's: the private half signs, the public half (base64 DER) verifies."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode()


def test_sendgrid_signed_events_are_verified_and_deduplicated_by_event_id(
        ctx, signed_client, db_engine, org, sendgrid_keys):
    client = signed_client
    private, public = sendgrid_keys
    rows = sent_run(ctx, client, db_engine, org, 3)
    set_secret(client, org, "sendgrid", public)
    pid = {c: d.provider_id for c, d in rows.items()}
    events = [{"email": "c0@example.com", "timestamp": 1783170000, "event": "delivered", "sg_event_id": "sg-1",
               "sg_message_id": f"{pid['c0000']}.filterdrecv-5645d9c87f-7k2mq-1-0"},
              {"email": "c1@example.com", "timestamp": 1783170001, "event": "click", "sg_event_id": "sg-2",
               "sg_message_id": "unrelated.filter0001", "herald_provider_id": pid["c0001"], "url": "https://x"},
              {"email": "c2@example.com", "timestamp": 1783170002, "event": "bounce", "type": "blocked",
               "sg_event_id": "sg-3", "sg_message_id": pid["c0002"], "reason": "451 try later"},
              {"email": "c2@example.com", "timestamp": 1783170003, "event": "processed", "sg_event_id": "sg-4",
               "sg_message_id": pid["c0002"]}]
    body = json.dumps(events).encode()
    stamp = "1783170010"

    def post(payload: bytes, signature: bytes) -> Any:
        return client.post(f"{HOOKS}/sendgrid", content=payload, headers={
            "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode()})

    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    other = ec.generate_private_key(ec.SECP256R1()).sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    assert post(body, other).status_code == 401
    altered = body.replace(b'"delivered"', b'"dropped"  ')
    assert post(altered, signature).status_code == 401
    assert statuses(db_engine, rows) == {"c0000": "sent", "c0001": "sent", "c0002": "sent"}
    assert ok(post(body, signature)) == {"received": 4, "applied": 3, "unchanged": 1, "duplicates": 0, "unmatched": 0}
    assert statuses(db_engine, rows) == {"c0000": "delivered", "c0001": "clicked", "c0002": "bounced"}
    assert subscription(db_engine, org, "c0002", "email") is None  # "blocked" is a soft bounce
    assert ok(post(body, signature))["duplicates"] == 4
    assert events_of(db_engine, org) == 4
    spam = json.dumps([{"event": "spamreport", "sg_event_id": "sg-5", "sg_message_id": pid["c0000"],
                        "timestamp": 1783170100}]).encode()
    assert ok(post(spam, private.sign(stamp.encode() + spam, ec.ECDSA(hashes.SHA256()))))["applied"] == 1
    assert subscription(db_engine, org, "c0000", "email") == "unsubscribed"
    assert statuses(db_engine, rows)["c0000"] == "delivered"
    (entry,) = ok(client.get(f"{API}/customers/c0000/audit", headers=org.headers()))["items"]
    assert (entry["action"], entry["from"], entry["to"], entry["actor"]) == ("unsubscribe", None, "unsubscribed", None)
    assert "reported by sendgrid (event sg-5" in entry["reason"]
