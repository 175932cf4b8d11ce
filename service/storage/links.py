"""Tracked tiny links: recording a delivery's links, following a code (counting the click), click counts.

A code is the only way to a stored URL: ``/t/{code}`` takes no target, so it can never redirect anywhere but
to a link that was in the rendered content of an approved message. :func:`safe_url` is checked again when a
code is followed: only an absolute ``http``/``https`` URL without control characters is ever answered.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from service.storage.tables import Delivery, TinyLink

#: what a code may look like (anything else is refused before the database is asked)
CODE = re.compile(r"[A-Za-z0-9_-]{10,64}")
#: the longest URL kept (longer links are left as they are by the shortener)
MAX_URL = 8192
#: delivery statuses a click moves on to ``clicked``
CLICKABLE = ("sent", "delivered", "opened")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def url_hash(url: str) -> str:
    """SHA-256 (hex) of a URL: what makes (delivery, URL) unique without indexing long text."""
    return hashlib.sha256(url.encode()).hexdigest()


def safe_url(url: object) -> bool:
    """Whether ``url`` may be redirected to: an absolute http(s) URL with a host, no whitespace or control
    characters (no header injection), at most :data:`MAX_URL` characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or _CONTROL.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def record_links(session: Session, org_id: int, key: str, message_id: int, run_id: int,
                 links: Iterable[tuple[str, str]]) -> int:
    """Store a delivery's (code, URL) pairs, as :func:`service.worker.links.shorten` returned them, in the
    caller's transaction (the one that writes the delivery row). A pair whose (delivery, URL) is already
    stored is left alone, so repeating the step writes nothing twice. Returns how many were new."""
    pairs = [(code, url) for code, url in links]
    for code, url in pairs:
        if not CODE.fullmatch(code):
            raise ValueError(f"a tiny-link code is 10 to 64 URL-safe characters, not {code!r}")
        if not safe_url(url):
            raise ValueError(f"only http(s) URLs are tracked, not {url[:100]!r}")
    if not pairs:
        return 0
    rows = [{"code": code, "org_id": org_id, "key": key, "message_id": message_id, "run_id": run_id, "url": url,
             "url_hash": url_hash(url), "clicks": 0, "created_at": datetime.now(UTC)} for code, url in pairs]
    table = TinyLink.__table__  # type: ignore[attr-defined]
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    result = session.execute(upsert(table).on_conflict_do_nothing(), rows)
    return max(0, result.rowcount or 0)  # type: ignore[attr-defined]


def codes_of(session: Session, key: str) -> dict[str, str]:
    """The codes a delivery already has: URL → code."""
    return {url: code for url, code in session.exec(select(TinyLink.url, TinyLink.code).where(TinyLink.key == key)).all()}


def click(session: Session, code: str, at: datetime | None = None) -> str | None:
    """Follow a code: its URL (and one more click counted, atomically in the database), or ``None`` for an
    unknown code or one whose URL is not a safe http(s) URL (then nothing is counted). A click moves its
    delivery from sent / delivered / opened to ``clicked``."""
    if not isinstance(code, str) or not CODE.fullmatch(code):
        return None
    row = session.exec(select(TinyLink.id, TinyLink.url, TinyLink.key).where(TinyLink.code == code)).first()
    if row is None:
        return None
    link_id, url, key = row
    if not safe_url(url):
        return None
    t = at or datetime.now(UTC)
    session.execute(update(TinyLink).where(col(TinyLink.id) == link_id).values(
        clicks=TinyLink.clicks + 1, last_clicked_at=t,
        first_clicked_at=func.coalesce(TinyLink.first_clicked_at, t)))
    session.execute(update(Delivery).where(col(Delivery.key) == key, col(Delivery.status).in_(CLICKABLE))
                    .values(status="clicked", updated_at=t))
    return url


def click_counts(session: Session, org_id: int, message_id: int, run_id: int | None = None) -> dict[str, Any]:
    """A message's link clicks (one run's with ``run_id``): ``links`` tracked, ``clicks`` in total,
    ``unique_clicks`` (links clicked at least once) and ``recipients`` (deliveries with a clicked link)."""
    where = [TinyLink.org_id == org_id, TinyLink.message_id == message_id]
    if run_id is not None:
        where.append(TinyLink.run_id == run_id)
    links, clicks, unique, recipients = session.execute(select(
        func.count(),
        func.coalesce(func.sum(TinyLink.clicks), 0),
        func.count().filter(col(TinyLink.clicks) > 0),
        func.count(func.distinct(TinyLink.key)).filter(col(TinyLink.clicks) > 0),
    ).where(*where)).one()
    return {"links": int(links), "clicks": int(clicks), "unique_clicks": int(unique), "recipients": int(recipients)}
