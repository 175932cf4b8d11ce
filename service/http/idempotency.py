"""``Idempotency-Key`` on POST: a repeat of a request within the window replays the first response.

As Courier and Stripe do: the first response (any status below 500) is kept per org and key for
``Settings.idempotency_hours``; a repeat with the same method, path and body gets it back, marked
``Idempotent-Replayed: true``; the same key with a different request is refused (422), and a repeat that
arrives while the first is still running gets 409. A 5xx is not kept, so the client may retry.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import anyio
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.http.problems import PROBLEM_JSON
from service.storage.keys import Principal
from service.storage.tables import IdempotencyRecord, utcnow

MAX_KEY = 255
MAX_KEPT = 1024 * 1024  # a response larger than this is not kept (the request is not replayable)
PENDING = 0


def _problem(status: int, detail: str) -> tuple[int, bytes]:
    import json

    body = {"type": "https://herald.dev/problems/idempotency", "title": "Idempotency-Key", "status": status,
            "detail": detail, "errors": [{"path": "Idempotency-Key", "code": "idempotency", "message": detail}]}
    return status, json.dumps(body).encode()


class Idempotency:
    """ASGI middleware (after authentication): keeps and replays first responses to keyed POSTs."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        key = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"idempotency-key"), None)
        principal = scope.get("user")
        if key is None or not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY:
            await _send_problem(send, *_problem(422, f"an Idempotency-Key is 1 to {MAX_KEY} characters"))
            return
        db = scope["app"].state.db
        body = await _read_body(receive, db.settings.max_body)
        if body is None:
            await _send_problem(send, *_problem(413, "the request body is larger than this server accepts (HERALD_MAX_BODY)"))
            return
        digest = hashlib.sha256()
        digest.update(f"{scope['method']} {scope['path']}?{scope.get('query_string', b'').decode('latin-1')}\n".encode())
        digest.update(body)
        fingerprint = digest.hexdigest()
        found = await anyio.to_thread.run_sync(_claim, db.engine, principal.org_id, key, fingerprint,
                                               db.settings.idempotency_hours)
        if found is not None:
            if found.fingerprint != fingerprint:
                await _send_problem(send, *_problem(422, "this Idempotency-Key was used with a different request"))
            elif found.status == PENDING:
                await _send_problem(send, *_problem(409, "a request with this Idempotency-Key is still running"))
            else:
                headers = [(b"content-type", found.content_type.encode()), (b"idempotent-replayed", b"true"),
                           (b"content-length", str(len(found.body)).encode())]
                await send({"type": "http.response.start", "status": found.status, "headers": headers})
                await send({"type": "http.response.body", "body": found.body, "more_body": False})
            return

        sent = False

        async def replay() -> ReceiveMessage:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}  # type: ignore[return-value]

        status, content_type, chunks, size = 500, "", [], 0

        async def capture(message: Message) -> None:
            nonlocal status, content_type, size
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = next((v.decode() for k, v in message.get("headers", []) if k.lower() == b"content-type"), "")
            elif message["type"] == "http.response.body" and size <= MAX_KEPT:
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
            await send(message)

        try:
            await self.app(scope, replay, capture)
        finally:
            keep = status < 500 and size <= MAX_KEPT
            await anyio.to_thread.run_sync(_settle, db.engine, principal.org_id, key, keep, status, b"".join(chunks),
                                           content_type)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def _send_problem(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _claim(engine: Any, org_id: int, key: str, fingerprint: str, hours: int) -> IdempotencyRecord | None:
    """The record kept for ``key`` (``None`` after claiming it for this request)."""
    with Session(engine, expire_on_commit=False) as session:
        cutoff = utcnow() - timedelta(hours=hours)
        session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.org_id) == org_id,
                                                     col(IdempotencyRecord.key) == key,
                                                     col(IdempotencyRecord.created_at) < cutoff))
        session.commit()
        found = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.org_id == org_id,
                                                             IdempotencyRecord.key == key)).first()
        if found is not None:
            return found
        session.add(IdempotencyRecord(org_id=org_id, key=key, fingerprint=fingerprint, status=PENDING, body=b"",
                                      content_type=""))
        try:
            session.commit()
        except IntegrityError:  # another request claimed it first
            session.rollback()
            return session.exec(select(IdempotencyRecord).where(IdempotencyRecord.org_id == org_id,
                                                                IdempotencyRecord.key == key)).first()
        return None


def _settle(engine: Any, org_id: int, key: str, keep: bool, status: int, body: bytes, content_type: str) -> None:
    with Session(engine) as session:
        row = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.org_id == org_id,
                                                           IdempotencyRecord.key == key)).first()
        if row is None:
            return
        if keep:
            row.status, row.body, row.content_type = status, body, content_type
            session.add(row)
        else:
            session.delete(row)
        session.commit()
