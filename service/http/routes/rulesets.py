"""Rulesets: upload (YAML or JSON text, checked by the engine as a rule file is, its ``tests:`` run), validate
without saving, list, and read each content-hash version. Problems point at ``file:line:column`` of the upload
(``ruleset.yaml`` or ``ruleset.json``, by the content type)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, Parameter

from service.http.auth import EDITORS, READERS
from service.http.deps import Caller, DbDep, decode_cursor, encode_cursor, page_limit
from service.http.problems import Problem, conflict, error, not_found, unprocessable
from service.storage import rulesets as store
from service.storage.tables import StoredRuleset

#: content types of an upload, and the name problems are reported under
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
JSON_TYPES = ("application/json",)
#: the largest ruleset accepted (the engine also applies HERALD_MAX_FILE_BYTES)
MAX_RULESET = 512 * 1024
RulesetName = Annotated[str, Parameter(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=200)]
Version = Annotated[str, Parameter(pattern=r"^[0-9a-f]{1,80}$")]


async def _upload_text(request: Request[Any, Any, Any]) -> tuple[str, str]:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media in JSON_TYPES:
        source = "ruleset.json"
    elif media in YAML_TYPES:
        source = "ruleset.yaml"
    else:
        raise Problem(415, f"send the ruleset as YAML ({', '.join(YAML_TYPES)}) or JSON (application/json)",
                      code="unsupported_media_type")
    body = await request.body()
    if len(body) > MAX_RULESET:
        raise Problem(413, f"a ruleset is at most {MAX_RULESET:,} bytes", code="too_large")
    try:
        return body.decode("utf-8-sig"), source
    except UnicodeDecodeError as exc:
        raise unprocessable("the ruleset is not UTF-8 text",
                            [error(source, "encoding", f"not UTF-8 ({exc.reason} at byte {exc.start})")]) from None


def ruleset_out(row: StoredRuleset, *, source: bool = False) -> dict[str, Any]:
    """A stored ruleset version on the wire."""
    out: dict[str, Any] = {"name": row.name, "kind": row.kind, "version": row.version, "ref": f"{row.name}@{row.version}",
                           "tests": row.tests, "created_by": row.created_by, "created_at": row.created_at.isoformat()}
    if source:
        out["source"] = row.source
    return out


def _rejected(exc: store.RulesetRejected) -> Problem:
    return unprocessable(exc.detail, exc.items)


@post("/rulesets", operation_id="uploadRuleset", tags=["rulesets"], guards=[EDITORS])
async def upload_ruleset(request: Request, caller: Caller, db: DbDep) -> Response[dict[str, Any]]:
    """Upload a ruleset: checked as a rule file, its tests run (a failing test is a 422 at its line), stored under
    its content-hash version. The same rules again return the stored version (200, nothing new)."""
    text, source = await _upload_text(request)
    def work() -> Response[dict[str, Any]]:
        with db.tx() as s:
            try:
                row, created = store.upload(s, caller.org_id, caller.user_id, text, db.herald.registry,
                                            db.herald.catalogue, source=source)
            except store.RulesetRejected as exc:
                raise _rejected(exc) from None
            except store.KindChanged as exc:
                raise conflict(str(exc), "kind_changed") from None
            return Response({**ruleset_out(row), "created": created}, status_code=201 if created else 200)

    return await anyio.to_thread.run_sync(work)


@post("/rulesets/validate", operation_id="validateRuleset", tags=["rulesets"], guards=[READERS], status_code=200)
async def validate_ruleset(request: Request, caller: Caller, db: DbDep) -> dict[str, Any]:
    """Check a ruleset as an upload would (load and tests) without saving it."""
    text, source = await _upload_text(request)
    def work() -> dict[str, Any]:
        try:
            checked = store.check_ruleset(text, db.herald.registry, db.herald.catalogue, source=source)
        except store.RulesetRejected as exc:
            raise _rejected(exc) from None
        rs = checked.ruleset
        return {"valid": True, "name": rs.name, "kind": rs.kind, "version": rs.version, "tests": checked.tests}

    return await anyio.to_thread.run_sync(work)


@get("/rulesets", operation_id="listRulesets", tags=["rulesets"], guards=[READERS], sync_to_thread=True)
def list_rulesets(caller: Caller, db: DbDep, cursor: FromQuery[str | None] = None,
                  limit: Annotated[int | None, Parameter(ge=1)] = None) -> dict[str, Any]:
    """The org's rulesets by name: each one's latest version and how many versions it has."""
    n = page_limit(db.settings, limit)
    after = decode_cursor(cursor) or ""
    if not isinstance(after, str):
        raise unprocessable("the cursor is not one this server gave", [error("cursor", "invalid", "unknown cursor")])
    with db.tx() as s:
        rows = store.names(s, caller.org_id, after=after, limit=n + 1)
        items = [{**ruleset_out(row), "versions": count} for row, count in rows[:n]]
        return {"items": items, "next_cursor": encode_cursor(rows[n - 1][0].name) if len(rows) > n else None}


@get("/rulesets/{name:str}/versions", operation_id="listRulesetVersions", tags=["rulesets"], guards=[READERS],
     sync_to_thread=True)
def list_ruleset_versions(name: FromPath[RulesetName], caller: Caller, db: DbDep) -> dict[str, Any]:
    """Every version of one ruleset, newest first (404 when the org has none of that name)."""
    with db.tx() as s:
        rows = store.versions(s, caller.org_id, name)
        if not rows:
            raise not_found("ruleset of this name")
        return {"items": [ruleset_out(r) for r in rows]}


@get("/rulesets/{name:str}/versions/{version:str}", operation_id="getRulesetVersion", tags=["rulesets"],
     guards=[READERS], sync_to_thread=True)
def get_ruleset_version(name: FromPath[RulesetName], version: FromPath[Version], caller: Caller,
                        db: DbDep) -> dict[str, Any]:
    """One version of a ruleset, with its text as uploaded and the result of its tests."""
    with db.tx() as s:
        row = store.get_version(s, caller.org_id, name, version)
        if row is None:
            raise not_found("version of this ruleset")
        return ruleset_out(row, source=True)


HANDLERS = [upload_ruleset, validate_ruleset, list_rulesets, list_ruleset_versions, get_ruleset_version]
