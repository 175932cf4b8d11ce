"""What handlers are given: the database (one transaction per request), the caller, paging and locking."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select

from engine.runtime import Herald
from service.http.auth import principal_of
from service.http.problems import Problem, conflict, error, not_found, unprocessable
from service.settings import Settings
from service.storage.db import transaction
from service.storage.keys import Principal
from service.storage.sealing import Sealer

T = TypeVar("T", bound=SQLModel)


@dataclass(frozen=True)
class Db:
    """The database, the engine façade and the settings, as handlers use them; ``sealer`` seals the secrets
    kept in the database."""

    engine: Engine
    herald: Herald
    settings: Settings
    sealer: Sealer = field(default_factory=Sealer)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back (changing nothing) when it raises."""
        with transaction(self.engine) as session:
            yield session


def provide_db(request: Request[Any, Any, Any]) -> Db:
    """The app's :class:`Db`."""
    return request.app.state.db


def provide_caller(request: Request[Any, Any, Any]) -> Principal:
    """The authenticated caller."""
    return principal_of(request)


def owned(session: Session, model: type[T], id: int, caller: Principal, what: str, *, lock: bool = False) -> T:
    """The row ``id`` of ``model`` if it belongs to the caller's org, else 404 (the same for another org's
    row as for a missing one, so ids reveal nothing). ``lock`` takes a row lock (``FOR UPDATE``)."""
    stmt = select(model).where(model.id == id, model.org_id == caller.org_id)  # type: ignore[attr-defined]
    if lock:
        stmt = stmt.with_for_update()
    row = session.exec(stmt).first()
    if row is None:
        raise not_found(what)
    return row


def expected_lock(request: Request[Any, Any, Any], body_version: int | None) -> int:
    """The version the caller edits, from ``If-Match: "N"`` or the body's ``version``; 428 without either."""
    header = request.headers.get("if-match")
    if header:
        raw = header.strip().removeprefix("W/").strip('"')
        try:
            return int(raw)
        except ValueError:
            raise unprocessable("If-Match must be the ETag the resource was read with",
                                [error("If-Match", "invalid", f"not a version: {header!r}")]) from None
    if body_version is not None:
        return body_version
    raise Problem(428, "send the version you edit: the `If-Match` header with the resource's ETag, or `version` in "
                  "the body (a change made by someone else in between is then refused with 409, not overwritten)",
                  code="precondition_required")


def check_lock(row: Any, expected: int, what: str) -> None:
    """409 when ``row`` changed since the caller read it."""
    if row.lock != expected:
        raise conflict(f"the {what} changed since you read it (you sent version {expected}, it is at {row.lock}); "
                       "read it again and re-apply your change", "version_conflict")


def etag(lock: int) -> dict[str, str]:
    """The ETag header of a resource at ``lock``."""
    return {"ETag": f'"{lock}"'}


def encode_cursor(value: Any) -> str:
    """An opaque paging cursor."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """A cursor's value; 422 for one this server did not make."""
    if not cursor:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise unprocessable("the cursor is not one this server gave", [error("cursor", "invalid", "unknown cursor")]) from None


def id_cursor(cursor: str | None) -> int:
    """The last id of the previous page from a cursor (0 for the first page); 422 for anything else."""
    value = decode_cursor(cursor)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise unprocessable("the cursor is not one this server gave", [error("cursor", "invalid", "unknown cursor")])
    return value


def page_limit(settings: Settings, limit: int | None) -> int:
    """The page size asked for, bounded by the settings (422 beyond)."""
    if limit is None:
        return settings.page_size
    if not 1 <= limit <= settings.max_page_size:
        raise unprocessable("limit out of range", [error("limit", "range", f"limit must be 1..{settings.max_page_size}")])
    return limit


#: handler parameter types: ``db: DbDep``, ``caller: Caller``
DbDep = NamedDependency[Db]
Caller = NamedDependency[Principal]
#: the largest id a path may name (ids are 64-bit; larger numbers are refused with 422, never sent to the database)
MAX_ID = 2**62
#: a row id in a request body: ``incentive_id: Id``
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
#: a row id in a path: ``campaign_id: IdPath``
IdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
