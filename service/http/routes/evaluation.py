"""Evaluation over HTTP: ad-hoc ``/evaluate`` (nothing stored), a stored message's dry run (stored as a run, its
decisions paged or streamed as NDJSON), one recipient's explanation, and the diff of two versions.

The decisions are the engine's (``Herald.evaluate``, mode ``auto``: the bulk strategy for large stored audiences),
byte for byte what ``herald evaluate`` prints for the same input. Previews reserve nothing but read the org's
incentive ledgers (:class:`service.storage.ledger.DbLedgerStore`), so caps count as in a real run.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.params import FromQuery, JSONBody, Parameter
from litestar.response import Stream

from engine.errors import EngineError
from engine.model import Customer, Decision, Message
from engine.run import NEXT_RUNS, Run
from engine.scheduling import next_runs
from engine.summary import Summary
from service.http.adhoc import (
    DecisionLedger,
    PreparedCache,
    content_key,
    engine_refusal,
    inline_customers,
    load_inline_message,
    prepared_key,
)
from service.http.auth import EVALUATORS
from service.http.deps import (
    Caller,
    Db,
    DbDep,
    Id,
    IdPath,
    decode_cursor,
    encode_cursor,
    owned,
    page_limit,
    provide_caller,
    provide_db,
)
from service.http.problems import error, not_found, unprocessable
from service.storage import runs
from service.storage.ledger import DbLedgerStore
from service.storage.tables import MessageRow, MessageVersion
from service.storage.tables import Run as RunRow

if TYPE_CHECKING:
    import polars as pl

    from service.storage.keys import Principal

#: inline customers per request
MAX_CUSTOMERS = 1_000
#: stored customer ids per dry run
MAX_CUSTOMER_IDS = 10_000
#: the largest ``/evaluate`` body (the app-wide limit still applies when lower)
EVALUATE_MAX_BODY = 4 * 1024 * 1024
#: the largest audience a dry run explains or renders (those run one recipient at a time)
MAX_EXPLAINED = 10_000
#: samples per kind of change in a diff, at most
MAX_SAMPLES = 50
NDJSON = "application/x-ndjson"

#: one engine ``Prepared`` per (database, org, message content, instant, options): single-recipient requests skip loading
PREPARED = PreparedCache(size=64)

Inline = Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_CUSTOMERS)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class EvaluateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An ad-hoc evaluation: a message definition (the engine's message data), the rulesets it names under
    ``rules`` (reference → ruleset data or YAML text), the customers (``id`` and attributes), "now" (default:
    the current minute), and whether to trace and render."""

    message: dict[str, Any]
    rulesets: dict[Ref, dict[str, Any] | str] = {}
    customers: Inline
    at: datetime | None = None
    explain: bool = False
    render: bool = False


class DryRunIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A dry run of the message's current version over its stored audience, or over stored customers by id
    (``customer_ids``), or over inline ``customers``; ``limit`` sizes the first page of decisions."""

    at: datetime | None = None
    customer_ids: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]],
                            msgspec.Meta(min_length=1, max_length=MAX_CUSTOMER_IDS)] | None = None
    customers: Inline | None = None
    explain: bool = False
    render: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    summary_only: bool = False


class RulesetDiffIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Two versions of one stored ruleset the message uses: the message's current version is evaluated with
    each (``from`` and ``to`` are content-hash versions, as ``GET /rulesets/{name}/versions`` lists them)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    from_version: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    to_version: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]


class DiffIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Two version numbers of the message (default: the approved, else the submitted one, against the current
    one), "now", and how many samples of each change to return."""

    from_version: Id | None = None
    to_version: Id | None = None
    ruleset: RulesetDiffIn | None = None
    at: datetime | None = None
    samples: Annotated[int, msgspec.Meta(ge=0, le=MAX_SAMPLES)] = 5


# -- shared pieces -----------------------------------------------------------------------------------------


def instant(value: datetime | None, path: str = "/at") -> datetime:
    """The evaluation instant: ``value`` (a time zone required), else the current minute (UTC)."""
    if value is None:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    if value.tzinfo is None:
        raise unprocessable("the instant needs a time zone", [error(path, "timezone",
                                                                     "give an offset, e.g. 2026-07-04T13:30:00+00:00")])
    return value


def summary_of(summary: Summary, message: Message, at: datetime) -> dict[str, Any]:
    """A run's summary as the CLI's JSON outputs give it (with ``next_runs`` for a recurring message)."""
    return _next_runs(summary.as_dict(), message, at)


def _next_runs(data: dict[str, Any], message: Message, at: datetime) -> dict[str, Any]:
    if message.schedule.kind == "recurring":
        upcoming = next_runs(message.schedule, message.campaign, at.astimezone(UTC), NEXT_RUNS)
        if upcoming:
            data["next_runs"] = [t.isoformat() for t in upcoming]
    return data


def summary_of_one(decision: Decision, costs: Mapping[str, float]) -> dict[str, Any]:
    """``summary_of_decisions([decision], costs).as_dict()``, the same dict, without counters and sorting."""
    if not decision.included:
        return {"total": 1, "included": 0, "excluded": 1, "channels": {}, "variants": {},
                "exclusion_reasons": {decision.excluded_reason or "unknown": 1}, "estimated_cost": 0}
    channel, variant = decision.channel, decision.variant
    return {"total": 1, "included": 1, "excluded": 0, "channels": {channel: 1} if channel is not None else {},
            "variants": {variant: 1} if variant is not None else {}, "exclusion_reasons": {},
            # as the sum of :func:`summary_of_decisions` gives it (an int 0 without a channel)
            "estimated_cost": round(0 + 1 * costs.get(channel, 0.0), 4) if channel is not None else 0}


def summary_of_decisions(decisions: Sequence[Decision], costs: Mapping[str, float]) -> Summary:
    """The engine's summary of a few decisions (what ``engine.summary.summarize`` counts), without a frame."""
    s = Summary(total=len(decisions))
    for d in decisions:
        if d.included:
            s.included += 1
            if d.channel is not None:
                s.channels[d.channel] += 1
            if d.variant is not None:
                s.variants[d.variant] += 1
        else:
            s.excluded[d.excluded_reason or "unknown"] += 1
    s.cost = sum(n * costs.get(name, 0.0) for name, n in sorted(s.channels.items()))
    return s


def evaluate(db: Db, caller: Principal, message: Message, audience: Any, at: datetime, *, explain: bool = False,
             render: bool = False) -> Run:
    """``Herald.evaluate`` in mode auto, previewing against the org's ledgers; 422 for what the engine refuses."""
    try:
        return db.herald.evaluate(message, audience, at=at, explain=explain, render=render,
                                  ledger=DbLedgerStore(db.engine, caller.org_id))
    except EngineError as exc:
        raise engine_refusal(exc) from None


def _costs(db: Db) -> Mapping[str, float]:
    registry = db.herald.registry
    found = _COSTS.get(registry)
    if found is None:  # a registry's channels are fixed once it is built
        found = _COSTS[registry] = MappingProxyType({name: reg.obj.cost for name, reg in registry.channels.items()})
    return found


#: each registry's channel costs, read once
_COSTS: weakref.WeakKeyDictionary[Any, Mapping[str, float]] = weakref.WeakKeyDictionary()


def _lines(frame: pl.DataFrame, run: Run) -> list[dict[str, Any]]:
    from engine.decision_frame import line_expr

    if frame.height == 0:
        return []
    return [json.loads(t) for t in frame.select(line_expr(frame.columns, run.rules_versions)).to_series()]


# -- POST /evaluate ----------------------------------------------------------------------------------------


class _OneRecipient(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An :class:`EvaluateIn` body with exactly one customer, its ``message`` and ``rulesets`` left as their
    JSON text (``msgspec.Raw``: checked as JSON, not decoded). Only for finding a kept ``Prepared`` of that
    text: every other field is checked strictly here (what this accepts, ``EvaluateIn`` accepts with the same
    values); a body it refuses, or whose text has no kept ``Prepared``, takes the handler's path."""

    message: msgspec.Raw
    rulesets: msgspec.Raw = msgspec.Raw(b"{}")
    customers: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=1)]
    at: datetime | None = None
    explain: bool = False
    render: bool = False


_ONE_RECIPIENT = msgspec.json.Decoder(_OneRecipient)
#: where the fast path leaves the message text's key for the handler (a miss: the handler keeps its Prepared)
_TEXT_KEY = "herald.evaluate.text_key"


def text_key(message: msgspec.Raw, rulesets: msgspec.Raw) -> tuple[str, bytes, bytes]:
    """The key of a kept ``Prepared`` by the request's JSON text of the message and of its rulesets (byte for
    byte: other text — even the same content spaced or ordered otherwise — is another key). Two texts decode
    to one content each, so an entry made from a text serves only that content; and the text was valid (as
    ``EvaluateIn``'s ``message`` and ``rulesets``) when the entry was made from it. A tuple: never equal to a
    :func:`content_key`."""
    return ("text", bytes(message), bytes(rulesets))


async def single_from_text(request: Request[Any, Any, Any]) -> dict[str, Any] | None:
    """The fast path of a single recipient (a ``before_request`` hook: after authentication, before Litestar
    decodes the body into :class:`EvaluateIn`): when the body is one customer and a message whose JSON text
    has a kept ``Prepared`` (the same text, instant and options), the decision without decoding the message.
    ``None`` otherwise: then the handler runs on the decoded body, refusing a bad one exactly as it always
    does, and keeps the ``Prepared`` it makes under the text's key.

    First of all, the route's role check (:data:`EVALUATORS`, here rather than as a guard: Litestar calls a
    guard with a copy of the handler object, ≈ 9 µs a request): a caller who may not evaluate gets the 403
    before the body is read, whatever the body.

    On a hit, the message and rulesets text were valid when the entry was made from them, and the other
    fields were decoded strictly here, so the handler's body would be valid too: what follows (the instant,
    the customer's checks, the decision) is the handler's own code, refusing the same way."""
    await EVALUATORS(request, request.route_handler)
    try:
        one = _ONE_RECIPIENT.decode(await request.body())
    except msgspec.DecodeError:
        return None  # the handler's decode refuses it (or takes it, leniently: e.g. ``"explain": "true"``)
    if one.at is not None and one.at.tzinfo is None:
        return None  # refused by the handler (after checking the rest of the body)
    db, caller = provide_db(request), provide_caller(request)
    at = instant(one.at)
    text = text_key(one.message, one.rulesets)
    entry = PREPARED.cached((db.engine, caller.org_id, *prepared_key(text, at, one.explain, one.render)))
    if entry is None:
        request.state[_TEXT_KEY] = text
        return None
    customer = inline_customers(db.herald, one.customers)[0]
    return await _decide_one(db, entry, customer, at)


# the role check (EVALUATORS) is the first thing ``single_from_text`` does
@post("/evaluate", operation_id="evaluate", tags=["evaluation"], request_max_body_size=EVALUATE_MAX_BODY,
      status_code=200, before_request=single_from_text)
async def evaluate_adhoc(data: JSONBody[EvaluateIn], request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Evaluate a message definition for inline customers; nothing is stored. Returns ``{decisions, summary}``
    as ``herald evaluate --format json`` does. One recipient is decided by a kept ``Prepared`` (fast)."""
    # the database and the caller are taken from the request, not injected: Litestar resolves two
    # dependencies of one handler concurrently, in an anyio task group (≈ 0.1 ms a request, measured)
    db, caller = provide_db(request), provide_caller(request)
    at = instant(data.at)
    if len(data.customers) != 1:
        return await anyio.to_thread.run_sync(_many, db, caller, data, at)
    customers = inline_customers(db.herald, data.customers)
    # the key of the message's text when the fast path looked it up (this body is that text, decoded)
    content = request.state.get(_TEXT_KEY) or content_key(data.message, data.rulesets)
    return await _single(db, caller, data, content, at, customers[0])


def _many(db: Db, caller: Principal, data: EvaluateIn, at: datetime) -> dict[str, Any]:
    customers = inline_customers(db.herald, data.customers)
    message = load_inline_message(db.herald, data.message, data.rulesets)
    run = evaluate(db, caller, message, customers, at, explain=data.explain, render=data.render)
    decisions = [d.as_dict() for d in run]
    return {"decisions": decisions, "summary": summary_of(run.summary(), message, at)}


def _local(db: Db) -> bool:
    """Whether the database is a local file (SQLite): its reads are short enough for the event loop."""
    return db.engine.dialect.name == "sqlite"


async def _single(db: Db, caller: Principal, data: EvaluateIn, content: Any, at: datetime,
                  customer: Customer) -> dict[str, Any]:
    """One recipient, by the kept ``Prepared`` of the message (made, in a worker thread, when missing: loading
    and compiling the message)."""

    def make() -> tuple[Any, DecisionLedger]:
        message = load_inline_message(db.herald, data.message, data.rulesets)
        ledger = DecisionLedger(DbLedgerStore(db.engine, caller.org_id))
        try:
            return db.herald.prepare(message, at=at, explain=data.explain, render=data.render,
                                     ledger=ledger), ledger
        except EngineError as exc:
            raise engine_refusal(exc) from None

    # the database and the org: a kept ``Prepared`` reads that org's ledgers in that database (a process may
    # serve apps over two databases, whose org ids overlap, as the tests do)
    key = (db.engine, caller.org_id, *prepared_key(content, at, data.explain, data.render))
    entry = PREPARED.cached(key) or await anyio.to_thread.run_sync(PREPARED.get, key, make)
    return await _decide_one(db, entry, customer, at)


async def _decide_one(db: Db, entry: Any, customer: Customer, at: datetime) -> dict[str, Any]:
    """``customer``'s decision by a kept ``Prepared``. On the event loop when the decision reads no database,
    or reads a local SQLite file (one indexed ``SELECT`` of the ledger, ≈ 8 µs; WAL readers never wait for
    writers); in a worker thread when it reads PostgreSQL over the network, and when another request holds
    the entry."""
    try:
        decision = None
        if not entry.reads_ledger or _local(db):
            decision = PREPARED.decide_if_free(entry, customer)
        if decision is None:
            decision = await anyio.to_thread.run_sync(PREPARED.decide, entry, customer)
    except EngineError as exc:
        raise engine_refusal(exc) from None
    message = entry.prepared.message
    return {"decisions": [decision.as_dict()],
            "summary": _next_runs(summary_of_one(decision, _costs(db)), message, at)}


# -- the stored message: dry run, explain, diff ------------------------------------------------------------


def _load(db: Db, session: Any, caller: Principal, version: MessageVersion) -> Message:
    try:
        return runs.sources.load(db.herald, session, caller.org_id, version)
    except EngineError as exc:
        raise engine_refusal(exc, ()) from None


def _stored_customers(db: Db, caller: Principal, ids: Sequence[str]) -> pl.DataFrame:
    frame = runs.sources.customers(db.engine, caller.org_id, db.herald, ids)
    found = set(frame.get_column("customer.id").to_list()) if frame.height else set()
    missing = [i for i, cid in enumerate(ids) if cid not in found]
    if missing:
        raise unprocessable(f"{len(missing)} customer id(s) are not customers of your org",
                            [error(f"/customer_ids/{i}", "unknown_customer", f"no customer {ids[i]!r}")
                             for i in missing[:100]])
    if len(set(ids)) != len(ids):
        raise unprocessable("a customer id is given twice", [error("/customer_ids", "duplicate", "ids repeat")])
    # the order asked for, as a run over an audience file keeps its order
    import polars as pl

    order = pl.DataFrame({"customer.id": list(ids), "_order": range(len(ids))})
    return frame.join(order, on="customer.id").sort("_order").drop("_order")


def _audience(db: Db, caller: Principal, version: MessageVersion, data: DryRunIn) -> tuple[Any, str]:
    if data.customers is not None and data.customer_ids is not None:
        raise unprocessable("give customers or customer_ids, not both",
                            [error("/customers", "exclusive", "customers and customer_ids exclude each other")])
    if data.customers is not None:
        return inline_customers(db.herald, data.customers), "inline"
    if data.customer_ids is not None:
        return _stored_customers(db, caller, data.customer_ids), "ids"
    return runs.sources.audience(db.engine, caller.org_id, db.herald, version), "stored"


def _size(audience: Any) -> int:
    return audience.height if hasattr(audience, "height") else len(audience)


# the handler's media type is NDJSON because a ``Stream`` takes the handler's over its own; the JSON answer sets
# its own media type
@post("/messages/{message_id:int}/dry-run", operation_id="dryRunMessage", tags=["evaluation"], guards=[EVALUATORS],
      sync_to_thread=True, status_code=201, request_max_body_size=EVALUATE_MAX_BODY, media_type=NDJSON)
def dry_run(message_id: IdPath, data: JSONBody[DryRunIn], request: Request, caller: Caller,
            db: DbDep) -> Response[Any]:
    """Evaluate the message's current version (nothing reserved) and store the run: ``{run_id, version_hash,
    summary, decisions (first page), next_cursor}``; with ``Accept: application/x-ndjson``, every decision as
    an NDJSON line and then a ``{"summary", "run_id", …}`` line."""
    at = instant(data.at)
    limit = page_limit(db.settings, data.limit)
    streaming = NDJSON in request.headers.get("accept", "")
    with db.tx() as s:
        message = owned(s, MessageRow, message_id, caller, "message")
        version = runs.sources.current_version(s, message, caller.user_id)
        engine_message = _load(db, s, caller, version)
    audience, kind = _audience(db, caller, version, data)
    if (data.explain or data.render) and _size(audience) > MAX_EXPLAINED:
        raise unprocessable("explain and render decide one recipient at a time", [error(
            "/explain" if data.explain else "/render", "too_many",
            f"{_size(audience):,} recipients; explain or render at most {MAX_EXPLAINED:,} (use customer_ids)")])
    run = evaluate(db, caller, engine_message, audience, at, explain=data.explain, render=data.render)
    store = _RunStore(db, caller, message_id, version, at, kind)
    if streaming:
        return Stream(store.stream(run, engine_message), media_type=NDJSON, status_code=200)
    if data.summary_only:
        row = store.save(summary_of(run.summary(), engine_message, at))
        return Response(store.body(row, [], None), status_code=201, media_type=MediaType.JSON)
    frame = run.frame()
    row = store.save(summary_of(run.summary(), engine_message, at), frame, run)
    first = _lines(frame.head(limit), run)
    more = encode_cursor(limit - 1) if frame.height > limit else None
    return Response(store.body(row, first, more), status_code=201, media_type=MediaType.JSON)


class _RunStore:
    """Stores one dry run's row (and decisions) in a transaction of its own, after the evaluation."""

    def __init__(self, db: Db, caller: Principal, message_id: int, version: MessageVersion, at: datetime, kind: str):
        self.db, self.caller, self.message_id, self.version, self.at, self.kind = db, caller, message_id, version, at, kind

    def save(self, summary: dict[str, Any], frame: pl.DataFrame | None = None, run: Run | None = None) -> RunRow:
        with self.db.tx() as s:
            row = runs.create_run(s, org_id=self.caller.org_id, message_id=self.message_id, version=self.version,
                                  at=self.at, audience=self.kind, summary=summary, user_id=self.caller.user_id)
            if frame is not None and run is not None:
                assert row.id is not None
                runs.store_decisions(s, row.id, frame, run.rules_versions)
            return row

    def body(self, row: RunRow, decisions: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
        return {"run_id": row.id, "message_id": self.message_id, "version": self.version.number,
                "version_hash": row.version_hash, "at": self.at.isoformat(), "audience": self.kind,
                "summary": row.summary, "summary_hash": row.summary_hash, "decisions": decisions,
                "next_cursor": cursor}

    def stream(self, run: Run, message: Message) -> Iterator[str]:
        """Every decision's NDJSON line (the engine's bytes), then the summary line with the stored run's id."""
        yield from run.ndjson()
        summary = summary_of(run.summary(), message, self.at)
        row = self.save(summary)
        yield json.dumps({"summary": summary, "run_id": row.id, "version_hash": row.version_hash,
                          "summary_hash": row.summary_hash}, ensure_ascii=False) + "\n"


@get("/runs/{run_id:int}", operation_id="getRun", tags=["evaluation"], guards=[EVALUATORS], sync_to_thread=True)
def get_run(run_id: IdPath, caller: Caller, db: DbDep) -> dict[str, Any]:
    """A stored run: its version, instant, audience kind, summary and summary hash."""
    with db.tx() as s:
        row = owned(s, RunRow, run_id, caller, "run")
        return {"run_id": row.id, "message_id": row.message_id, "version_hash": row.version_hash, "kind": row.kind,
                "at": row.at.isoformat(), "audience": row.audience, "summary": row.summary,
                "summary_hash": row.summary_hash}


@get("/runs/{run_id:int}/decisions", operation_id="listRunDecisions", tags=["evaluation"], guards=[EVALUATORS],
     sync_to_thread=True)
def run_decisions(run_id: IdPath, caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
                  limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """A stored run's decisions in audience order, a page at a time (``next_cursor`` while more remain)."""
    n = page_limit(db.settings, limit)
    after = decode_cursor(cursor)
    if after is None:
        after = -1
    if not isinstance(after, int):
        raise unprocessable("the cursor is not one this server gave", [error("cursor", "invalid", "unknown cursor")])
    with db.tx() as s:
        row = owned(s, RunRow, run_id, caller, "run")
        assert row.id is not None
        items, last = runs.decisions_page(s, row.id, after, n)
        return {"items": items, "next_cursor": encode_cursor(last) if last is not None else None}


@get("/messages/{message_id:int}/explain", operation_id="explainMessage", tags=["evaluation"], guards=[EVALUATORS],
     sync_to_thread=True)
def explain_customer(message_id: IdPath, caller: Caller, db: DbDep,
                     customer: Annotated[str, Parameter(min_length=1, max_length=200)],
                     at: FromQuery[datetime | None] = None) -> dict[str, Any]:
    """Why one customer gets their decision from the message's current version: every rule with each
    condition's outcome, the channels tried, the send time (``herald explain``). The customers ahead of them in
    the stored audience are decided first, so a capped incentive counts as in the dry run."""
    from engine.columnar.decisions import customer_of
    from engine.explain import explain

    when = instant(at, "at")
    with db.tx() as s:
        message = owned(s, MessageRow, message_id, caller, "message")
        version = runs.sources.current_version(s, message, caller.user_id)
        engine_message = _load(db, s, caller, version)
    frame = runs.sources.audience(db.engine, caller.org_id, db.herald, version)
    hits = frame.get_column("customer.id").eq(customer).arg_true() if frame.height else None
    if hits is not None and hits.len():
        index = int(hits[0])
        found = customer_of(frame.row(index, named=True))
        ahead: Iterator[Customer] = (customer_of(r) for r in frame.slice(0, index).iter_rows(named=True))
        size: int | None = frame.height
    else:
        alone = runs.sources.customers(db.engine, caller.org_id, db.herald, [customer])
        if alone.height == 0:
            raise not_found("customer")
        found, ahead, size = customer_of(alone.row(0, named=True)), iter(()), None
    try:
        result = explain(engine_message, db.herald.registry, found, at=when, before=ahead, audience_size=size,
                         ledger=DbLedgerStore(db.engine, caller.org_id))
    except EngineError as exc:
        raise engine_refusal(exc, ()) from None
    return {"message_id": message_id, "version": version.number, "version_hash": version.hash,
            "in_audience": size is not None, **result.as_dict()}


def _diff_versions(s: Any, caller: Principal, message: MessageRow, data: DiffIn) -> tuple[MessageVersion, MessageVersion]:
    assert message.id is not None

    def numbered(number: int, path: str) -> MessageVersion:
        found = runs.version_by_number(s, caller.org_id, message.id or 0, number)
        if found is None:
            raise unprocessable("no such version", [error(path, "unknown_version", f"the message has no version {number}")])
        return found

    to = numbered(data.to_version, "/to_version") if data.to_version is not None else \
        runs.sources.current_version(s, message, caller.user_id)
    if data.from_version is not None:
        return numbered(data.from_version, "/from_version"), to
    base = runs.version_by_id(s, caller.org_id, message.approved_version_id) or \
        runs.version_by_id(s, caller.org_id, message.submitted_version_id)
    if base is None:
        raise unprocessable("nothing to compare with", [error("/from_version", "required",
                                                              "the message has no approved or submitted version: "
                                                              "give from_version")])
    return base, to


CHANGES = ("inclusion", "variant", "channel", "incentive")


@post("/messages/{message_id:int}/diff", operation_id="diffMessageVersions", tags=["evaluation"], guards=[EVALUATORS],
      sync_to_thread=True, status_code=200)
def diff_versions(message_id: IdPath, data: JSONBody[DiffIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Evaluate two versions of the message over the same audience (the newer version's) and count the
    recipients whose inclusion, variant, channel or incentive changes, with samples of each."""
    at = instant(data.at)
    with db.tx() as s:
        message = owned(s, MessageRow, message_id, caller, "message")
        if data.ruleset is not None:
            if data.from_version is not None or data.to_version is not None:
                raise unprocessable("compare message versions or ruleset versions, not both",
                                    [error("/ruleset", "ambiguous", "give either ruleset or from_version/to_version")])
            old = new = runs.sources.current_version(s, message, caller.user_id)
            old_message, new_message = (_with_ruleset(db, s, caller, new, data.ruleset, v)
                                        for v in (data.ruleset.from_version, data.ruleset.to_version))
        else:
            old, new = _diff_versions(s, caller, message, data)
            old_message, new_message = _load(db, s, caller, old), _load(db, s, caller, new)
    audience = runs.sources.audience(db.engine, caller.org_id, db.herald, new)
    before = evaluate(db, caller, old_message, audience, at)
    after = evaluate(db, caller, new_message, audience, at)
    a, b = before.frame(), after.frame()
    result = compare_frames(a, b, data.samples)
    return {"from": {"version": old.number, "version_hash": old.hash,
                     "summary": summary_of(before.summary(), old_message, at)},
            "to": {"version": new.number, "version_hash": new.hash,
                   "summary": summary_of(after.summary(), new_message, at)},
            "at": at.isoformat(), **result}


def _with_ruleset(db: Db, session: Any, caller: Principal, version: MessageVersion, which: RulesetDiffIn,
                  ruleset_version: str) -> Message:
    """The message version with the ruleset ``which.name`` pinned to ``ruleset_version`` instead."""
    from service.storage.messages import load_document

    document = json.loads(json.dumps(version.document))
    rules = document.get("rules") or {}
    kinds = [kind for kind, ref in rules.items() if str(ref).split("@", 1)[0] == which.name]
    if not kinds:
        raise unprocessable("the message does not use this ruleset",
                            [error("/ruleset/name", "not_used", f"the message's rules do not name {which.name!r}")])
    for kind in kinds:
        rules[kind] = f"{which.name}@{ruleset_version}"
    try:
        return load_document(db.herald, session, caller.org_id, document)
    except EngineError as exc:
        raise engine_refusal(exc, ()) from None


def compare_frames(a: pl.DataFrame, b: pl.DataFrame, samples: int) -> dict[str, Any]:
    """Join two decision frames on the customer and count (and sample) each kind of change."""
    import polars as pl

    cols = ["customer", "included", "excluded_reason", "variant", "channel", "incentive"]
    j = a.select(cols).join(b.select(cols), on="customer", how="inner", suffix="_to")
    both = pl.col("included") & pl.col("included_to")
    masks = {
        "inclusion": pl.col("included") != pl.col("included_to"),
        "variant": both & pl.col("variant").ne_missing(pl.col("variant_to")),
        "channel": both & pl.col("channel").ne_missing(pl.col("channel_to")),
        "incentive": pl.col("incentive").ne_missing(pl.col("incentive_to")),
    }
    counts = j.select([m.sum().alias(k) for k, m in masks.items()]
                      + [pl.any_horizontal(list(masks.values())).sum().alias("any")]).row(0, named=True)
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, mask in masks.items():
        rows = j.filter(mask).head(samples).iter_rows(named=True) if samples else []
        out[kind] = [{"customer": r["customer"],
                      "from": _side(r, ""), "to": _side(r, "_to")} for r in rows]
    return {"total": j.height, "changed": {k: int(counts[k] or 0) for k in (*CHANGES, "any")}, "samples": out}


def _side(row: Mapping[str, Any], suffix: str) -> dict[str, Any]:
    incentive = row["incentive" + suffix]
    return {"included": row["included" + suffix], "excluded_reason": row["excluded_reason" + suffix],
            "variant": row["variant" + suffix], "channel": row["channel" + suffix],
            "incentive": json.loads(incentive) if incentive is not None else None}


HANDLERS = [evaluate_adhoc, dry_run, get_run, run_decisions, explain_customer, diff_versions]

__all__ = ["HANDLERS", "PREPARED", "compare_frames", "instant", "summary_of", "summary_of_decisions",
           "summary_of_one"]
