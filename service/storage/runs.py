"""Dry runs in the database: the message versions and audiences they evaluate, and the runs and decisions kept.

Two groups of functions:

* **What a run reads** — a message's current version (an immutable snapshot), that version as an engine
  ``Message``, its stored audience and stored customers as polars frames. These are the messages and audience
  repositories' functions (``service.storage.messages``, ``service.storage.audience``); they are reached only
  through :data:`sources` (a :class:`StoredSources`), so that the HTTP layer has one place to call and tests
  can stand in for them.
* **What a run leaves** — the ``Run`` row (its summary and the summary's hash) and its ``RunDecision`` rows,
  inserted set-based from the engine's decision frame (no ORM object per row), read back a page at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Engine, Table, Text, bindparam, cast, insert
from sqlmodel import Session, col, select

from service.storage import audience, messages
from service.storage.tables import MessageRow, MessageVersion, RunDecision
from service.storage.tables import Run as RunRow

if TYPE_CHECKING:
    import polars as pl

    from engine.model import Message
    from engine.runtime import Herald

DECISIONS: Table = RunDecision.__table__  # type: ignore[attr-defined]
#: decisions inserted per statement
INSERT_BATCH = 5_000


# -- what a run reads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSources:
    """The stored message and audience, as the messages and audience repositories give them."""

    def current_version(self, session: Session, message: MessageRow, user_id: int) -> MessageVersion:
        """The message's current version: its snapshot as it is now (made when the draft changed since the last)."""
        return messages.snapshot(session, message, user_id)

    def load(self, herald: Herald, session: Session, org_id: int, version: MessageVersion) -> Message:
        """The version as an engine ``Message`` (loaded with a fresh façade, its stored rulesets resolved)."""
        return messages.load_version(herald, session, org_id, version)

    def audience(self, engine: Engine, org_id: int, herald: Herald, version: MessageVersion) -> pl.DataFrame:
        """The version's audience (its include and exclude groups) as a customer frame."""
        return audience.audience_frame(engine, org_id, herald, audience_of(version))

    def customers(self, engine: Engine, org_id: int, herald: Herald, external_ids: Sequence[str]) -> pl.DataFrame:
        """The org's stored customers with these ids, as a customer frame (ids it does not hold are left out)."""
        return audience.customers_frame(engine, org_id, herald, list(external_ids))


def audience_of(version: MessageVersion) -> Any:
    """The ``audience`` part of a version's document (its include and exclude groups)."""
    return (version.document or {}).get("audience")


#: the sources dry runs read; replaced only by tests
sources: StoredSources = StoredSources()


def version_by_number(session: Session, org_id: int, message_id: int, number: int) -> MessageVersion | None:
    """Version ``number`` of a message of the org."""
    return session.exec(select(MessageVersion).where(MessageVersion.org_id == org_id,
                                                     MessageVersion.message_id == message_id,
                                                     MessageVersion.number == number)).first()


def version_by_id(session: Session, org_id: int, version_id: int | None) -> MessageVersion | None:
    """The version row ``version_id`` of the org (``None`` for no id)."""
    if version_id is None:
        return None
    return session.exec(select(MessageVersion).where(MessageVersion.org_id == org_id,
                                                     MessageVersion.id == version_id)).first()


# -- what a run leaves ------------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def summary_hash(summary: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the summary's canonical JSON: what an approval binds to."""
    return "sha256:" + hashlib.sha256(canonical_json(summary).encode()).hexdigest()


def create_run(session: Session, *, org_id: int, message_id: int, version: MessageVersion, at: datetime,
               audience: str, summary: Mapping[str, Any], user_id: int, kind: str = "dry_run") -> RunRow:
    """Store a run's row: its version, instant, audience kind (``stored``, ``ids`` or ``inline``) and summary."""
    assert version.id is not None
    row = RunRow(org_id=org_id, message_id=message_id, version_id=version.id, version_hash=version.hash, kind=kind,
                 at=at, audience=audience, summary=dict(summary), summary_hash=summary_hash(summary),
                 created_by=user_id)
    session.add(row)
    session.flush()
    return row


def decision_rows(frame: pl.DataFrame, rules_versions: Mapping[str, str], start: int = 0) -> Iterator[dict[str, Any]]:
    """The ``run_decision`` values of a decision frame (``data``: each decision's JSON text, the same bytes as the
    engine's NDJSON line), numbered from ``start``."""
    import polars as pl

    from engine.decision_frame import line_expr

    lines = frame.select(
        pl.col("customer"), pl.col("included"), pl.col("variant"), pl.col("channel"), pl.col("excluded_reason"),
        line_expr(frame.columns, rules_versions).alias("data"))
    for i, row in enumerate(lines.iter_rows(named=True), start=start):
        row["position"] = i
        yield row


def store_decisions(session: Session, run_id: int, frame: pl.DataFrame, rules_versions: Mapping[str, str]) -> int:
    """Insert a run's decisions from its decision frame, a batch per statement (executemany, no ORM objects);
    the number inserted."""
    pg = session.get_bind().dialect.name == "postgresql"
    data = cast(bindparam("data", type_=Text), JSON) if pg else bindparam("data", type_=Text)
    stmt = insert(DECISIONS).values(run_id=run_id, position=bindparam("position"), customer=bindparam("customer"),
                                    included=bindparam("included"), variant=bindparam("variant"),
                                    channel=bindparam("channel"), excluded_reason=bindparam("excluded_reason"),
                                    data=data)
    n = 0
    batch: list[dict[str, Any]] = []
    for row in decision_rows(frame, rules_versions):
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            session.execute(stmt, batch)
            n += len(batch)
            batch = []
    if batch:
        session.execute(stmt, batch)
        n += len(batch)
    return n


def decisions_page(session: Session, run_id: int, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` decisions of a run after position ``after`` (``-1``: from the first), and the last
    position given when more remain (else ``None``). The caller checks the run belongs to its org."""
    rows = session.exec(select(RunDecision.position, RunDecision.data)
                        .where(RunDecision.run_id == run_id, col(RunDecision.position) > after)
                        .order_by(col(RunDecision.position)).limit(limit + 1)).all()
    items = [_data(d) for _, d in rows[:limit]]
    return items, (rows[limit - 1][0] if len(rows) > limit else None)


def _data(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)
