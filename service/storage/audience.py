"""Audiences from the store: customers read as columns into polars, and audience groups (by filter, by upload,
by merging groups), their snapshots and their members.

* The customers come as the engine's audience frame from :func:`service.storage.customer_copy.customers_frame`
  (the org's columnar copy brought up to date, or the rows of a list of ids).
* A filter group holds a condition in the rules' own condition language (a rule file's ``when:``), checked
  at save by the engine's rule loader against the field catalogue and evaluated over the frame by the
  engine's columnar compiler (``engine.evaluators.columnar.condition_expr``): there is no second language.
* An upload group's members are ``AudienceMember`` rows, matched by external id, phone (E.164) or e-mail.
* A merge group includes and excludes other groups (cycles refused).
* :func:`group_snapshot` is a group's self-contained definition (what a message version hashes);
  :func:`audience_frame` evaluates ``{"include": [...], "exclude": [...]}`` snapshots to a frame.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, bindparam, func, text
from sqlmodel import Session, col, select

from engine.audience import normalised_handle
from engine.columnar.frame import ID
from engine.contracts import RuleKind
from engine.errors import RuleFileError
from engine.evaluators.columnar import condition_expr
from engine.fields import FieldCatalogue
from engine.rulefiles.ir import Condition
from engine.rulefiles.loader import load_ruleset_data
from engine.runtime import Herald
from service.storage.customer_copy import customers_frame
from service.storage.tables import AudienceGroup, AudienceMember, Customer

KINDS = ("filter", "upload", "merge")
ID_TYPES = ("external_id", "phone", "email")
MAX_MERGE_DEPTH = 32
MAX_PROBLEMS = 1000
_CHUNK = 900


class AudienceProblem(ValueError):
    """A group definition or an upload is refused: ``items`` are ``(path, code, message)`` (JSON pointers into
    the request, or ``file:line:column`` for an upload)."""

    def __init__(self, detail: str, items: Sequence[tuple[str, str, str]]):
        super().__init__(detail)
        self.detail = detail
        self.items = list(items)


# --- filter conditions ------------------------------------------------------------------------------------


class _NoOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")


_FILTER_KIND = RuleKind("audience_group_filter", _NoOutcome, lambda _: {}, order=0, hit_policies=("first",))


def _pointer_of(label_path: str, base: str) -> str:
    """``filter:when.all[0].eq`` (the loader's rule-relative path) → ``/filter/all/0/eq``."""
    inner = label_path.split(":", 1)[1] if ":" in label_path else ""
    inner = inner.removeprefix("when").lstrip(".")
    parts = [p for p in inner.replace("[", ".").replace("]", "").split(".") if p]
    return base + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def compile_filter(condition: Any, catalogue: FieldCatalogue, base: str = "/filter") -> Condition:
    """A filter condition (a rule's ``when:``) checked by the engine's rule loader against ``catalogue`` and
    compiled to the engine's IR; :class:`AudienceProblem` with JSON pointers under ``base`` otherwise. Only
    ``customer.*`` fields may be tested (an audience is chosen before any message or time is known)."""
    items = [(f"{base}{where}", "unknown_field", f"an audience filter tests customer fields only, not {name!r}")
             for where, name in _fields(condition) if not name.startswith("customer.")]
    data = {"ruleset": "audience-group", "kind": _FILTER_KIND.name, "hit_policy": "first",
            "rules": [{"id": "filter", "priority": 0, "when": condition, "then": {}}]}
    try:
        ruleset = load_ruleset_data(data, catalogue, kinds={_FILTER_KIND.name: _FILTER_KIND})
    except RuleFileError as exc:
        items += [(_at_key(condition, _pointer_of(p.path, base) if p.path.startswith("filter") else base, base,
                           p.code), p.code, p.message) for p in exc.problems]
        ruleset = None
    if items or ruleset is None:
        raise AudienceProblem("the filter is not a valid condition", items)
    return ruleset.rules[0].when


def _at_key(condition: Any, where: str, base: str, code: str) -> str:
    """``where`` made to point at the key at fault when it points at a comparison (the loader names the
    comparison): its ``field`` for an unknown field, else its operator."""
    node = condition
    for part in where.removeprefix(base).split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return where
    if not isinstance(node, Mapping) or "field" not in node or where.endswith("/field"):
        return where
    ops = [k for k in node if k != "field"]
    key = "field" if code == "unknown_field" or len(ops) != 1 else ops[0]
    return f"{where}/{key}"


def _fields(condition: Any, where: str = "") -> Iterable[tuple[str, str]]:
    """(pointer, field) of every comparison of a raw condition."""
    if isinstance(condition, Mapping):
        if isinstance(condition.get("field"), str):
            yield f"{where}/field", condition["field"]
        for key in ("all", "any"):
            if isinstance(condition.get(key), list):
                for i, item in enumerate(condition[key]):
                    yield from _fields(item, f"{where}/{key}/{i}")
        if "not" in condition:
            yield from _fields(condition["not"], f"{where}/not")


# --- groups -----------------------------------------------------------------------------------------------


def org_group(session: Session, org_id: int, group_id: int) -> AudienceGroup | None:
    """Group ``group_id`` if it belongs to ``org_id``."""
    return session.exec(select(AudienceGroup).where(AudienceGroup.id == group_id, AudienceGroup.org_id == org_id)).first()


def check_merge(session: Session, org_id: int, include: Sequence[int], exclude: Sequence[int],
                editing: int | None = None) -> None:
    """Refuse (:class:`AudienceProblem`) a merge naming groups not in the org, none to include, or making a
    cycle (a group that includes or excludes, directly or not, the group being edited)."""
    items = []
    if not include:
        items.append(("/include", "empty", "a merge group includes at least one group"))
    for key, ids in (("include", include), ("exclude", exclude)):
        for i, gid in enumerate(ids):
            if org_group(session, org_id, gid) is None:
                items.append((f"/{key}/{i}", "not_found", f"no audience group {gid} in your org"))
            elif editing is not None and _reaches(session, org_id, gid, editing):
                items.append((f"/{key}/{i}", "cycle", f"group {gid} is or uses group {editing}: merging it makes a cycle"))
    if items:
        raise AudienceProblem("the merge is not valid", items)


def _reaches(session: Session, org_id: int, start: int, target: int) -> bool:
    seen: set[int] = set()
    todo = [start]
    while todo:
        gid = todo.pop()
        if gid == target:
            return True
        if gid in seen:
            continue
        seen.add(gid)
        g = org_group(session, org_id, gid)
        if g is not None and g.kind == "merge":
            todo += [*g.definition.get("include", []), *g.definition.get("exclude", [])]
    return False


def users_of(session: Session, group: AudienceGroup) -> list[int]:
    """The merge groups of the org that name ``group``."""
    rows = session.exec(select(AudienceGroup).where(AudienceGroup.org_id == group.org_id,
                                                    AudienceGroup.kind == "merge")).all()
    return [g.id for g in rows if g.id is not None and group.id in
            [*g.definition.get("include", []), *g.definition.get("exclude", [])]]


def group_snapshot(session: Session, group: AudienceGroup, _depth: int = 0) -> dict[str, Any]:
    """A group's self-contained, JSON-able definition (what a message version hashes): a filter group's
    condition; an upload group's id and member count; a merge group's include/exclude snapshots, flattened."""
    if _depth > MAX_MERGE_DEPTH:
        raise AudienceProblem("the merge nests too deep", [("/include", "too_deep", "groups nest too deep")])
    if group.kind == "filter":
        return {"kind": "filter", "group": group.id, "filter": group.definition["filter"]}
    if group.kind == "upload":
        return {"kind": "upload", "group": group.id, "members": group.members}
    out: dict[str, Any] = {"kind": "merge", "group": group.id}
    for key in ("include", "exclude"):
        snaps = []
        for gid in group.definition.get(key, []):
            g = org_group(session, group.org_id, gid)
            if g is None:
                raise AudienceProblem(f"group {group.id} names group {gid}, which is gone",
                                      [(f"/{key}", "not_found", f"no audience group {gid}")])
            snaps.append(group_snapshot(session, g, _depth + 1))
        out[key] = snaps
    return out


def _upload_groups(snaps: Iterable[Mapping[str, Any]], out: set[int]) -> set[int]:
    for s in snaps:
        if s["kind"] == "upload":
            out.add(int(s["group"]))
        elif s["kind"] == "merge":
            _upload_groups([*s.get("include", []), *s.get("exclude", [])], out)
    return out


def _has_filter(snaps: Iterable[Mapping[str, Any]]) -> bool:
    return any(s["kind"] == "filter" or s["kind"] == "merge" and _has_filter(s.get("include", [])) for s in snaps)


def _members(engine: Engine, org_id: int, group_ids: Iterable[int]) -> dict[int, list[str]]:
    """Live members' external ids per upload group (of ``org_id`` only)."""
    out: dict[int, list[str]] = {}
    stmt = text("SELECT m.group_id, c.external_id FROM audience_member m JOIN customer c ON c.id = m.customer_id "
                "JOIN audience_group g ON g.id = m.group_id WHERE g.org_id = :org AND c.org_id = :org "
                "AND c.deleted_at IS NULL AND m.group_id IN :ids").bindparams(bindparam("ids", expanding=True))
    ids = sorted(set(group_ids))
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            for gid, ext in conn.execute(stmt, {"org": org_id, "ids": ids[start:start + _CHUNK]}):
                out.setdefault(int(gid), []).append(ext)
    return out


def _mask(snap: Mapping[str, Any], schema: Mapping[str, pl.DataType], members: Mapping[int, list[str]],
          catalogue: FieldCatalogue) -> pl.Expr:
    kind = snap["kind"]
    if kind == "filter":
        return condition_expr(compile_filter(snap["filter"], catalogue), schema)
    if kind == "upload":
        return pl.col(ID).is_in(members.get(int(snap["group"]), []))
    return _combined(snap.get("include", []), snap.get("exclude", []), schema, members, catalogue)


def _combined(include: Sequence[Mapping[str, Any]], exclude: Sequence[Mapping[str, Any]],
              schema: Mapping[str, pl.DataType], members: Mapping[int, list[str]], catalogue: FieldCatalogue) -> pl.Expr:
    inc = pl.any_horizontal([_mask(s, schema, members, catalogue) for s in include]) if include else pl.lit(False)
    if not exclude:
        return inc
    return inc & ~pl.any_horizontal([_mask(s, schema, members, catalogue) for s in exclude])


def audience_frame(engine: Engine, org_id: int, herald: Herald, snapshot: Mapping[str, Any]) -> pl.DataFrame:
    """union(include) − union(exclude) of group snapshots (``{"include": [...], "exclude": [...]}``) as the
    engine's audience frame: each live customer once, anonymised ones never, sorted by ``customer.id``."""
    include, exclude = list(snapshot.get("include", [])), list(snapshot.get("exclude", []))
    members = _members(engine, org_id, _upload_groups([*include, *exclude], set()))
    if _has_filter(include):
        frame = customers_frame(engine, org_id, herald)
    else:
        wanted = {m for g in _upload_groups(include, set()) for m in members.get(g, [])}
        frame = customers_frame(engine, org_id, herald, sorted(wanted))
    mask = _combined(include, exclude, frame.schema, members, herald.catalogue)
    return frame.filter(mask)  # customers_frame sorts by customer.id; filtering keeps the order


# --- upload groups ----------------------------------------------------------------------------------------


@dataclass
class UploadRead:
    """The customers an upload names (row ids) and the rows refused."""

    customer_ids: list[int]
    rows: int
    rejected: list[tuple[str, str, str]] = field(default_factory=list)


def _identifiers(data: bytes, fmt: str, id_column: str, name: str) -> list[tuple[int, str | None]]:
    """(line, identifier or None when blank) per row of a CSV (lines as in the file) or Parquet (row numbers)."""
    if fmt == "parquet":
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:
            raise AudienceProblem("the file is not Parquet", [(f"{name}:1", "parquet", f"unreadable Parquet: {exc}")]) from None
        if id_column not in frame.columns:
            raise AudienceProblem(f"no column {id_column!r}", [(f"{name}:1", "missing_id_column",
                                  f"no column {id_column!r}; columns are {', '.join(frame.columns)}")])
        values = frame.get_column(id_column).cast(pl.String).to_list()
        return [(i + 1, v.strip() if v is not None and v.strip() else None) for i, v in enumerate(values)]
    try:
        textual = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AudienceProblem("the file is not UTF-8", [(f"{name}:{line}", "encoding", "not UTF-8 text; save the file as UTF-8")]) from None
    reader = csv.reader(io.StringIO(textual, newline=""), strict=True)
    out: list[tuple[int, str | None]] = []
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise AudienceProblem("empty file", [(f"{name}:1", "empty", "empty file: a header row is required")]) from None
    except csv.Error as exc:
        raise AudienceProblem("unreadable header", [(f"{name}:1", "csv", f"unreadable header: {exc}")]) from None
    if id_column not in header:
        raise AudienceProblem(f"no column {id_column!r}", [(f"{name}:1", "missing_id_column",
                              f"no column {id_column!r}; columns are {', '.join(header)}")])
    idx, line = header.index(id_column), reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            raise AudienceProblem("malformed CSV", [(f"{name}:{start}", "csv", f"malformed CSV: {exc}")]) from None
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            out.append((start, "\x00columns" + f"expected {len(header)} columns, found {len(row)}"))
            continue
        value = row[idx].strip()
        out.append((start, value or None))


def read_upload(session: Session, org_id: int, catalogue: FieldCatalogue, data: bytes, fmt: str, id_column: str,
                id_type: str, *, keep_valid: bool = False, name: str = "upload") -> UploadRead:
    """The live customers of ``org_id`` an upload names (by ``id_type``: external id, phone normalised to E.164,
    or e-mail address normalised), every bad row reported as ``file:line:column``; :class:`AudienceProblem`
    on any bad row unless ``keep_valid``."""
    if id_type not in ID_TYPES:
        raise ValueError(f"unknown id type {id_type!r}")
    rows = _identifiers(data, fmt, id_column, name)
    contact = catalogue.contacts.get(id_type) if id_type != "external_id" else None
    rejected: list[tuple[str, str, str]] = []
    keys: list[tuple[int, str]] = []
    for line, value in rows:
        where = f"{name}:{line}:{id_column}"
        if value is not None and value.startswith("\x00columns"):
            rejected.append((f"{name}:{line}", "columns", value.removeprefix("\x00columns")))
        elif value is None:
            rejected.append((where, "missing_id", f"the {id_column} is missing"))
        elif contact is not None:
            handle, error = normalised_handle(contact, value)
            if handle is None:
                rejected.append((where, "invalid_handle", error or f"{id_type} {value!r} is malformed"))
            else:
                keys.append((line, handle))
        else:
            keys.append((line, value))
    if id_type == "email":  # mailboxes are matched without regard to case (as mail providers deliver them)
        keys = [(line, key.lower()) for line, key in keys]
    found = _customer_ids(session, org_id, id_type, sorted({k for _, k in keys}))
    ids: set[int] = set()
    label = "external id" if id_type == "external_id" else id_type
    for line, key in keys:
        matched = found.get(key)
        if not matched:
            rejected.append((f"{name}:{line}:{id_column}", "unknown_customer", f"no customer with {label} {key!r} in your org"))
        else:
            ids.update(matched)
    rejected.sort(key=lambda item: _line_of(item[0]))
    if rejected and not keep_valid:
        raise AudienceProblem(f"{name}: {len(rejected)} bad row(s); nothing was stored", rejected[:MAX_PROBLEMS])
    return UploadRead(sorted(ids), len(rows), rejected)


def _line_of(path: str) -> int:
    parts = path.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _customer_ids(session: Session, org_id: int, id_type: str, keys: Sequence[str]) -> dict[str, list[int]]:
    column: Any = {"external_id": Customer.external_id, "phone": Customer.phone, "email": Customer.email}[id_type]
    if id_type == "email":
        column = func.lower(column)
    out: dict[str, list[int]] = {}
    for start in range(0, len(keys), _CHUNK):
        stmt = select(Customer.id, column).where(Customer.org_id == org_id, col(Customer.deleted_at).is_(None),
                                                 column.in_(keys[start:start + _CHUNK]))
        for cid, key in session.exec(stmt):
            if cid is not None and key is not None:
                out.setdefault(key, []).append(cid)
    return out


def add_members(session: Session, group_id: int, customer_ids: Sequence[int]) -> None:
    """Store an upload group's members (set-based: one ``executemany``)."""
    if customer_ids:
        session.execute(AudienceMember.__table__.insert(),  # type: ignore[attr-defined]
                        [{"group_id": group_id, "customer_id": c} for c in customer_ids])


def snapshot_json(snapshot: Mapping[str, Any]) -> str:
    """The canonical JSON of a snapshot (keys sorted, no spaces): what a hash is taken of."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
