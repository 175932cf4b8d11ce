"""Delivery receipts and subscription changes: webhook secrets per org, receipt events stored once, the
delivery status moved forward only, and a customer's recorded ``subscriptions[channel]``.

Status order: ``sent`` → ``delivered`` → ``opened`` → ``clicked`` only ever moves forward (a late
``delivered`` after ``opened`` changes nothing); ``bounced`` and ``failed`` replace only ``sent`` or
``delivered`` (an asynchronous bounce after the receiving server took the message). A hard bounce that
applies also records ``hard_bounced`` for the customer on the delivery's channel, so no later run tries the
address again; an ``unsubscribed`` receipt (a spam report or an unsubscribe the provider took) records
``unsubscribed`` on the channel (in the customer's audit log, no user acting) and leaves the delivery's
status as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from service.storage import audit
from service.storage.customer_changes import stamp
from service.storage.sealing import Sealer
from service.storage.tables import Customer, Delivery, ReceiptEvent, WebhookSecret

#: receipt providers and what their secret is
PROVIDERS = {"twilio": "the account's auth token", "sendgrid": "the Event Webhook verification key (public key)",
             "herald": "the HMAC-SHA256 key of X-Herald-Signature"}
#: the forward order of accepted deliveries
FORWARD = {"sent": 0, "delivered": 1, "opened": 2, "clicked": 3}
#: statuses a receipt can bring (others are stored and change nothing)
STATUSES = (*[s for s in FORWARD if s != "sent"], "bounced", "failed")
#: a receipt saying the recipient opted out (a spam report, an unsubscribe at the provider)
UNSUBSCRIBED = "unsubscribed"
#: what a bounce or failure may replace
_NEGATIVE_FROM = ("sent", "delivered")


@dataclass(frozen=True)
class Receipt:
    """One provider event, in Herald's terms: ``status`` is one of :data:`STATUSES` (anything else is kept
    but moves nothing); ``hard`` marks a permanent bounce."""

    event_id: str
    provider_id: str
    status: str
    at: datetime | None = None
    error: str | None = None
    hard: bool = False


def allowed_from(status: str) -> tuple[str, ...]:
    """The delivery statuses a receipt of ``status`` may move on from (empty: it moves nothing)."""
    if status in FORWARD:
        return tuple(s for s, rank in FORWARD.items() if rank < FORWARD[status])
    if status in ("bounced", "failed"):
        return _NEGATIVE_FROM
    return ()


# -- secrets --------------------------------------------------------------------------------------------


def set_secret(session: Session, org_id: int, provider: str, secret: str, sealer: Sealer) -> None:
    """Store (or replace) the org's secret for ``provider``, sealed (``SealingError`` without a key)."""
    secret = sealer.seal(secret)
    row = session.exec(select(WebhookSecret).where(WebhookSecret.org_id == org_id, WebhookSecret.provider == provider)
                       .with_for_update()).first()
    if row is None:
        row = WebhookSecret(org_id=org_id, provider=provider, secret=secret)
    row.secret, row.updated_at = secret, datetime.now(UTC)
    session.add(row)
    session.flush()


def secrets_of(session: Session, org_ids: Iterable[int], provider: str, sealer: Sealer) -> dict[int, str]:
    """The orgs' secrets for ``provider``, unsealed (orgs without one are left out)."""
    ids = sorted(set(org_ids))
    if not ids:
        return {}
    rows = session.exec(select(WebhookSecret.org_id, WebhookSecret.secret).where(
        col(WebhookSecret.org_id).in_(ids), WebhookSecret.provider == provider)).all()
    return {org: sealer.unseal(stored) for org, stored in rows}


def orgs_by_provider_id(session: Session, provider_ids: Iterable[str]) -> dict[str, set[int]]:
    """provider id → the orgs with a delivery the provider gave that id (usually one)."""
    ids = sorted(set(provider_ids))
    out: dict[str, set[int]] = {}
    for start in range(0, len(ids), 500):
        rows = session.exec(select(Delivery.provider_id, Delivery.org_id).where(
            col(Delivery.provider_id).in_(ids[start:start + 500])).distinct()).all()
        for pid, org in rows:
            if pid is not None:
                out.setdefault(pid, set()).add(org)
    return out


# -- subscriptions --------------------------------------------------------------------------------------


def set_subscription(session: Session, customer_id: int, channel: str, status: str) -> str | None:
    """Record ``subscriptions[channel] = status`` for the customer row (under its row lock); returns the
    status it had before."""
    row = session.exec(select(Customer).where(Customer.id == customer_id).with_for_update()).one()
    before = (row.subscriptions or {}).get(channel)
    if before != status:
        row.subscriptions = {**(row.subscriptions or {}), channel: status}
        row.updated_at = datetime.now(UTC)
        stamp(session, row)
        session.add(row)
        session.flush()
    return before


def _customer_id(session: Session, org_id: int, external_id: str) -> int | None:
    return session.exec(select(Customer.id).where(Customer.org_id == org_id, Customer.external_id == external_id,
                                                  col(Customer.deleted_at).is_(None))).first()


# -- receipts -------------------------------------------------------------------------------------------


def _store_event(session: Session, org_id: int, provider: str, r: Receipt, key: str) -> int | None:
    """Insert the event unless (org, provider, event id) is stored already; its row id, or None (a repeat)."""
    table = ReceiptEvent.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    stmt = upsert(table).values(
        org_id=org_id, provider=provider, event_id=r.event_id, key=key, status=r.status[:20], hard=r.hard,
        applied=False, at=r.at, error=(r.error or None) and r.error[:500], created_at=datetime.now(UTC),
    ).on_conflict_do_nothing().returning(table.c.id)
    return session.execute(stmt).scalar()


def apply_receipts(session: Session, provider: str, receipts: Sequence[tuple[int, Receipt]]) -> dict[str, int]:
    """Apply (org, receipt) pairs: each event is stored once; a new one moves its delivery forward when the
    order allows; a hard bounce that applies records ``hard_bounced`` on the delivery's channel. Returns
    counts: ``applied``, ``unchanged`` (stored, but the order kept the status), ``duplicates``,
    ``unmatched`` (no delivery of the org has the provider id)."""
    tally = {"applied": 0, "unchanged": 0, "duplicates": 0, "unmatched": 0}
    for org_id, r in receipts:
        d = session.exec(select(Delivery).where(Delivery.org_id == org_id, Delivery.provider_id == r.provider_id)
                         .order_by(col(Delivery.id).desc())).first()
        if d is None:
            tally["unmatched"] += 1
            continue
        event_row = _store_event(session, org_id, provider, r, d.key)
        if event_row is None:
            tally["duplicates"] += 1
            continue
        if r.status == UNSUBSCRIBED and d.channel:
            cid = _customer_id(session, org_id, d.customer)
            before = set_subscription(session, cid, d.channel, UNSUBSCRIBED) if cid is not None else UNSUBSCRIBED
            moved = before != UNSUBSCRIBED
            if moved:
                session.execute(update(ReceiptEvent).where(col(ReceiptEvent.id) == event_row).values(applied=True))
                audit.record(session, org_id, "customer", cid, "unsubscribe", before, UNSUBSCRIBED,  # type: ignore[arg-type]
                             None, f"{d.channel}: {before or 'not recorded'} → unsubscribed, reported by {provider} "
                                   f"(event {r.event_id}, delivery {d.key})")
            tally["applied" if moved else "unchanged"] += 1
            continue
        moved = _move(session, d, r)
        if moved:
            session.execute(update(ReceiptEvent).where(col(ReceiptEvent.id) == event_row).values(applied=True))
            if r.status == "bounced" and r.hard and d.channel:
                cid = _customer_id(session, org_id, d.customer)
                if cid is not None:
                    set_subscription(session, cid, d.channel, "hard_bounced")
        tally["applied" if moved else "unchanged"] += 1
    return tally


def _move(session: Session, d: Delivery, r: Receipt) -> bool:
    """Move the delivery to the receipt's status when the order allows (atomically: the database checks the
    status it replaces)."""
    froms = allowed_from(r.status)
    if not froms:
        return False
    values: dict[str, Any] = {"status": r.status, "updated_at": datetime.now(UTC)}
    if r.status in ("bounced", "failed"):
        values["errors"] = [*d.errors, {"channel": d.channel, "outcome": r.status, "reason": r.error or r.status,
                                        "at": (r.at or datetime.now(UTC)).isoformat(), "receipt": r.event_id}]
    result = session.execute(update(Delivery).where(col(Delivery.id) == d.id, col(Delivery.status).in_(froms))
                             .values(**values))
    session.expire(d)
    return (result.rowcount or 0) == 1  # type: ignore[attr-defined]
