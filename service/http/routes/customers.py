"""Customers: create or update one, bulk upsert (JSON lines, CSV or Parquet), read, page, delete (anonymise).

Every row is checked by the engine's audience reader, so the service accepts and refuses exactly what the CLI
does; an upload with any bad row stores nothing (422, every bad row as ``file:line:column``) unless
``keep_valid=true``, which stores the good rows and reports the others.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from engine.errors import AudienceError
from engine.errors import Problem as EngineProblem
from service.http.auth import EDITORS, READERS
from service.http.deps import Caller, Db, DbDep, encode_cursor, id_cursor, page_limit
from service.http.problems import Problem, error, not_found, pointer, unprocessable
from service.storage.customer_copy import STORE_AT, refresh
from service.storage.customers import (
    anonymise,
    attributes_json,
    get_customer,
    iter_problems,
    list_customers,
    row_attributes,
    upsert_customers,
)
from service.storage.tables import Customer

log = logging.getLogger(__name__)

ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: request content types of a bulk upload → the engine reader's format
MEDIA_TYPES = {
    "application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/json-lines": "jsonl",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
}
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
MAX_REPORTED = 1000


class CustomerIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One customer: its external id and attributes by path without ``customer.`` (``tier``, ``phone``,
    ``subscription.sms`` or nested ``{"subscription": {"sms": …}}``). Values are checked and normalised as in
    an audience file; sending an existing id updates it (values sent replace, values not sent stay)."""

    id: ExternalId
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


def customer_out(row: Customer) -> dict[str, Any]:
    """A customer on the wire: its external id and flat attributes."""
    return {"id": row.external_id, "attributes": row_attributes(row),
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat()}


def _single_pointer(p: EngineProblem, sent: dict[str, Any]) -> str:
    if p.path in ("", "id"):
        return "/id"
    if p.path in sent:
        return pointer(["attributes", p.path])
    return pointer(["attributes", *p.path.split(".")])


@post("/customers", operation_id="upsertCustomer", tags=["customers"], guards=[EDITORS], sync_to_thread=True)
def upsert_customer(data: JSONBody[CustomerIn], caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Create a customer (201), or update the one with this id (200): attributes sent replace the stored ones,
    attributes not sent stay. Values are checked like an audience file's (422 naming the attribute)."""
    if "id" in data.attributes or "customer.id" in data.attributes:
        raise unprocessable("the id is given once, outside attributes",
                            [error("/attributes/id", "reserved", "the id is the top-level `id`")])
    line = attributes_json({"id": data.id, **data.attributes})
    with db.tx() as s:
        try:
            result = upsert_customers(s, caller.org_id, db.herald, line, "jsonl", name="body")
        except AudienceError as exc:
            raise unprocessable("the customer is not valid; nothing was stored",
                                [error(_single_pointer(p, data.attributes), p.code, p.message) for p in exc.problems]) from None
        row = get_customer(s, caller.org_id, data.id.strip())
        assert row is not None
        return Response(customer_out(row), status_code=201 if result.created else 200)


def _format_of(media_type: str) -> str | None:
    return MEDIA_TYPES.get(media_type.split(";", 1)[0].strip().lower())


async def upload_of(request: Request[Any, Any, Any]) -> tuple[bytes, str, str]:
    """(bytes, format, name) of an upload sent as the body (its content type naming the format) or as the
    ``file`` part of a multipart form (the part's content type or file name naming it); 415 otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        form = await request.form()
        part = form.get("file")
        if part is None or isinstance(part, str):
            raise unprocessable("send the file as the `file` part of the form", [error("file", "missing", "no file part")])
        name = part.filename or "upload"
        fmt = _format_of(part.content_type or "") or next(
            (f for suffix, f in SUFFIXES.items() if name.lower().endswith(suffix)), None)
        if fmt is None:
            raise Problem(415, "the file is JSON lines (.jsonl), CSV (.csv) or Parquet (.parquet)",
                          code="unsupported_media_type")
        return await part.read(), fmt, name
    fmt = _format_of(content_type)
    if fmt is None:
        raise Problem(415, f"send customers as {', '.join(sorted(MEDIA_TYPES))} or a multipart form, "
                      f"not {content_type or 'no content type'}", code="unsupported_media_type")
    return await request.body(), fmt, "body"


def _bulk(db: Db, org_id: int, data: bytes, fmt: str, name: str, keep_valid: bool) -> dict[str, Any]:
    with db.tx() as s:
        try:
            result = upsert_customers(s, org_id, db.herald, data, fmt, keep_valid=keep_valid, name=name)
        except AudienceError as exc:
            raise unprocessable(f"{name}: {len(exc.problems)} bad row(s) shown; nothing was stored "
                                "(keep_valid=true stores the good rows)", list(iter_problems(exc.problems))) from None
    if result.created + result.updated >= STORE_AT:
        _refresh_copy(db, org_id)
    return {"received": result.received, "created": result.created, "updated": result.updated,
            "rejected_count": len(result.rejected), "rejected": list(iter_problems(result.rejected[:MAX_REPORTED]))}


#: the copies being made after an upload, by org (one at a time per org)
REFRESHING: dict[int, threading.Thread] = {}
_refreshing = threading.Lock()


def _refresh_copy(db: Db, org_id: int) -> None:
    """Bring the org's columnar copy up to date after a large upload or a deletion, in a thread of its own so
    that the request answers at once: until the copy is made, reads of the org read its rows again."""

    def run() -> None:
        try:
            refresh(db.engine, org_id, db.herald)
        except Exception:  # the upload is committed; a copy not made now is made by the next read of the org
            log.warning("the customer copy of org %s was not refreshed after an upload", org_id, exc_info=True)
        finally:
            with _refreshing:
                REFRESHING.pop(org_id, None)

    with _refreshing:
        if org_id in REFRESHING:  # the running one, or the next read, takes this upload's rows on top
            return
        REFRESHING[org_id] = thread = threading.Thread(target=run, name=f"herald-copy-{org_id}", daemon=True)
    thread.start()


@post("/customers/bulk", operation_id="bulkUpsertCustomers", tags=["customers"], guards=[EDITORS], status_code=200)
async def bulk_upsert(request: Request[Any, Any, Any], caller: Caller, db: DbDep,
                      keep_valid: FromQuery[bool] = False) -> dict[str, Any]:
    """Create or update many customers from JSON lines (``application/x-ndjson``), CSV (``text/csv``) or
    Parquet (``application/vnd.apache.parquet``), as the body or as the ``file`` of a multipart form. Any bad
    row: 422 listing them (``file:line:column``) and nothing stored, unless ``keep_valid=true``."""
    data, fmt, name = await upload_of(request)
    return await anyio.to_thread.run_sync(partial(_bulk, db, caller.org_id, data, fmt, name, keep_valid))


@get("/customers", operation_id="listCustomers", tags=["customers"], guards=[READERS], sync_to_thread=True)
def list_all(caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
             limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """The org's customers (anonymised ones left out), oldest first, a page at a time."""
    n = page_limit(db.settings, limit)
    after = id_cursor(cursor)
    with db.tx() as s:
        rows = list_customers(s, caller.org_id, after, n + 1)
        return {"items": [customer_out(c) for c in rows[:n]],
                "next_cursor": encode_cursor(rows[n - 1].id) if len(rows) > n else None}


@get("/customers/{external_id:str}", operation_id="getCustomer", tags=["customers"], guards=[READERS],
     sync_to_thread=True)
def get_one(external_id: FromPath[str], caller: Caller, db: DbDep) -> dict[str, Any]:
    """One customer by external id (404 for an anonymised one, or one of another org)."""
    with db.tx() as s:
        row = get_customer(s, caller.org_id, external_id)
        if row is None:
            raise not_found("customer")
        return customer_out(row)


@delete("/customers/{external_id:str}", operation_id="deleteCustomer", tags=["customers"], guards=[EDITORS],
        sync_to_thread=True, status_code=204)
def delete_one(external_id: FromPath[str], caller: Caller, db: DbDep) -> None:
    """Delete a customer by anonymising it: contacts and attributes cleared, never in an audience again; the
    row stays so past counts stay true."""
    with db.tx() as s:
        if not anonymise(s, caller.org_id, external_id):
            raise not_found("customer")
    _refresh_copy(db, caller.org_id)  # anonymising dropped the org's copy (it held the customer's contacts)


HANDLERS = [upsert_customer, bulk_upsert, list_all, get_one, delete_one]
