"""Loads rule files: parse with positions, validate the schema, check fields/types/reachability, build IR."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.contracts import RuleKind
from engine.errors import Problem, RuleFileError, ValidationFailed
from engine.fields import BUILTIN_FIELDS, FieldCatalogue, build_catalogue, coerce
from engine.plain import plain_message
from engine.registry import unknown_kind
from engine.rulefiles import regex
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Condition, Not, Rule, Ruleset
from engine.rulefiles.schema import AllOf, AlwaysCond, AnyOfCond, Comparison, NotCond, RuleFile
from engine.sourcefile import SourceData, check_depth, parse_text, read_source

_ORDERED = {"integer", "number", "date", "datetime"}
_SCALAR_OPS = {"eq", "ne", "lt", "lte", "gt", "gte"}


def load_ruleset(
    path: str | Path, catalogue: FieldCatalogue | None = None, *, kinds: Mapping[str, RuleKind],
    channels: Collection[str] | None = None,
) -> Ruleset:
    """Load, validate and compile one rule file; every problem found raises one ``RuleFileError``.

    :param catalogue: the fields rules may test (default: the built-in fields only).
    :param kinds: the registered rule kinds (``registry.kinds``); a file of another kind is refused.
    :param channels: known channel names; a rule naming others in a kind's ``channel_fields`` is an error.
    """
    try:
        src = read_source(path)
    except ValidationFailed as exc:
        raise RuleFileError(exc.problems, exc.summary) from None
    return _load(src, catalogue, kinds, channels)


def load_ruleset_data(
    data: Mapping[str, Any] | str, catalogue: FieldCatalogue | None = None, *, kinds: Mapping[str, RuleKind],
    source: str = "<api>", channels: Collection[str] | None = None,
) -> Ruleset:
    """Like :func:`load_ruleset` for data already in memory (a dict, or YAML/JSON text)."""
    try:
        if not isinstance(data, str):
            check_depth(data, source)
        src = parse_text(data, source) if isinstance(data, str) else SourceData(data, source)
    except ValidationFailed as exc:
        raise RuleFileError(exc.problems, exc.summary) from None
    return _load(src, catalogue, kinds, channels)


def _load(src: SourceData, catalogue: FieldCatalogue | None, kinds: Mapping[str, RuleKind],
          channels: Collection[str] | None) -> Ruleset:
    catalogue = catalogue or build_catalogue(BUILTIN_FIELDS)
    if not isinstance(src.data, dict):
        raise RuleFileError([src.problem("a rule file is a mapping with ruleset, kind, rules", code="shape")],
                            f"{src.file}: invalid rule file")
    if "message" in src.data and "ruleset" not in src.data:
        raise RuleFileError([src.problem("this is a message file (it has 'message:'), not a rule file; check it "
                                         "with herald message check", code="shape")], f"{src.file}: not a rule file")
    problems: list[Problem] = []
    given = src.data.get("kind")
    if isinstance(given, str) and given not in kinds:
        problems.append(src.problem(unknown_kind(given, kinds), ("kind",), "unknown_kind"))
    try:
        model = RuleFile.model_validate(src.data)
    except ValidationError as exc:
        problems += [_pydantic_problem(src, err) for err in exc.errors()]
    if problems:
        raise RuleFileError(problems, f"{src.file}: invalid rule file")
    kind = kinds[model.kind]
    if model.hit_policy not in kind.hit_policies:
        problems.append(src.problem(
            f"a {kind.name} ruleset takes hit_policy {' or '.join(kind.hit_policies)}, not {model.hit_policy}",
            ("hit_policy",), "hit_policy"))

    seen: dict[str, int] = {}
    rules: list[tuple[int, Rule]] = []
    then_model = kind.then_model
    for i, rm in enumerate(model.rules):
        label = rm.id
        if rm.id in seen:
            problems.append(src.problem(f"duplicate rule id (first used by rules[{seen[rm.id]}])",
                                        ("rules", i, "id"), "duplicate_id", f"{label}:id"))
            continue
        seen[rm.id] = i
        try:
            then = then_model.model_validate(rm.then).model_dump()
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(src.problem(err["msg"],
                                            ("rules", i, "then", *err["loc"]), "then", f"{label}:then.{_loc(err['loc'])}"))
            continue
        if channels is not None:
            problems += _unknown_channels(src, kind, then, i, label, channels)
        cond = _to_ir(rm.when, src, ("rules", i, "when"), label, catalogue, problems)
        rules.append((i, Rule(rm.id, rm.priority, cond, then)))

    rules.sort(key=lambda pair: (pair[1].priority, pair[0]))
    if model.hit_policy == "first":
        problems += _shadowed(rules, src)
    for i, test in enumerate(model.tests):
        problems += _given_problems(test.given, src, ("tests", i, "given"), catalogue)
    if problems:
        raise RuleFileError(problems, f"{src.file}: {len(problems)} problem(s) in ruleset {model.ruleset}")

    version = ruleset_version(model)
    tests = tuple(t.model_dump(exclude_none=True) for t in model.tests)
    return Ruleset(model.ruleset, model.kind, model.hit_policy, tuple(r for _, r in rules), version, src.file, tests)


def _given_problems(given: Mapping[str, Any], src: SourceData, loc: tuple[Any, ...], cat: FieldCatalogue,
                    prefix: str = "") -> list[Problem]:
    """The facts of a test example's ``given`` that no rule could see: unknown fields (a typo would make the
    example pass or fail for the wrong reason) and values of the wrong type for their field."""
    out = []
    for key, value in given.items():
        path, where = f"{prefix}{key}", (*loc, key)
        if isinstance(value, Mapping) and value and cat.lookup(path) is None:
            out += _given_problems(value, src, where, cat, f"{path}.")
            continue
        spec = cat.lookup(path)
        if spec is None:
            if isinstance(value, Mapping):
                continue  # ``customer: {}``: no facts
            hint = cat.suggest(path)
            out.append(src.problem(f"unknown field {path!r}" + (f" (did you mean {hint!r}?)" if hint else
                                   "; declare customer fields in rules/fields.yaml"), where, "unknown_field"))
            continue
        try:
            coerce(spec.type, value)
        except ValueError as exc:
            out.append(src.problem(str(exc), where, "type"))
    return out


def _unknown_channels(src: SourceData, kind: RuleKind, then: Mapping[str, Any], i: int, label: str,
                      channels: Collection[str]) -> list[Problem]:
    out = []
    for key in kind.channel_fields:
        value = then.get(key)
        named = [(key, value)] if isinstance(value, str) else [((key, j), v) for j, v in enumerate(value or ())]
        for where, ch in named:
            if ch not in channels:
                path = where if isinstance(where, tuple) else (where,)
                out.append(src.problem(f"unknown channel {ch!r}; registered: {', '.join(sorted(channels))}",
                                       ("rules", i, "then", *path), "unknown_channel", f"{label}:then.{_loc(path)}"))
    return out


#: what the version leaves out: prose (descriptions, the owner) and the examples, none of which is behaviour
_NOT_HASHED: dict[str, Any] = {"tests": True, "description": True, "owner": True,
                               "rules": {"__all__": {"description": True}}}


def ruleset_version(model: RuleFile) -> str:
    """The version of a ruleset: the first 12 hex digits of the sha256 of its canonical JSON (keys sorted,
    no spaces; rules in file order, which breaks ties of equal priority), without :data:`_NOT_HASHED`."""
    canonical = json.dumps(model.model_dump(mode="json", exclude=_NOT_HASHED, by_alias=True),
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _shadowed(rules: list[tuple[int, Rule]], src: SourceData) -> list[Problem]:
    out = []
    for k, (_, r) in enumerate(rules):
        if isinstance(r.when, Always):
            for i, later in rules[k + 1:]:
                out.append(src.problem(
                    f"can never fire: rule {r.id} (always, priority {r.priority}) fires first "
                    f"under hit_policy first", ("rules", i, "priority"), "unreachable", f"{later.id}:priority"))
            break
    return out


def _to_ir(cond: Any, src: SourceData, loc: tuple[Any, ...], label: str, cat: FieldCatalogue,
           problems: list[Problem]) -> Condition:
    if isinstance(cond, AlwaysCond):
        return Always()
    if isinstance(cond, AllOf):
        return All(tuple(_to_ir(c, src, (*loc, "all", j), label, cat, problems) for j, c in enumerate(cond.all)))
    if isinstance(cond, AnyOfCond):
        return AnyOf(tuple(_to_ir(c, src, (*loc, "any", j), label, cat, problems) for j, c in enumerate(cond.any)))
    if isinstance(cond, NotCond):
        return Not(_to_ir(cond.not_, src, (*loc, "not"), label, cat, problems))
    assert isinstance(cond, Comparison)
    op, value = cond.operator
    where = f"{label}:{_loc(loc[2:])}"

    def bad(msg: str, code: str, key: str = op) -> Condition:
        problems.append(src.problem(msg, (*loc, key), code, where))
        return Not(Always())  # a placeholder (never "always": no shadowing); the load fails anyway

    spec = cat.lookup(cond.field)
    if spec is None:
        hint = cat.suggest(cond.field)
        return bad(f"unknown field {cond.field!r}" + (f" (did you mean {hint!r}?)" if hint else
                   "; declare customer fields in rules/fields.yaml"), "unknown_field", "field")
    ftype = spec.type
    try:
        if op in ("exists", "missing"):
            value = True
        elif op == "matches":
            if ftype != "string":
                return bad(f"matches needs a string field; {cond.field} is {ftype}", "type_mismatch")
            regex.check(value)
        elif op in ("contains", "contains_any"):
            if ftype != "list":
                return bad(f"{op} needs a list field; {cond.field} is {ftype}", "type_mismatch")
            value = tuple(coerce("string", v) for v in value) if op == "contains_any" else coerce("string", value)
        elif ftype == "list":
            return bad(f"{op} does not apply to list field {cond.field}; use contains or contains_any",
                       "type_mismatch")
        elif op in ("in", "not_in"):
            value = tuple(_literal(ftype, v) for v in value)
        elif op == "between":
            if ftype not in _ORDERED:
                return bad(f"between needs a number or date field; {cond.field} is {ftype}", "type_mismatch")
            lo, hi = (_literal(ftype, v) for v in value)
            if lo > hi:
                return bad(f"between [{lo}, {hi}]: the lower bound is above the upper bound", "empty_range")
            value = (lo, hi)
        else:
            if op not in ("eq", "ne") and ftype not in _ORDERED:
                return bad(f"{op} needs a number or date field; {cond.field} is {ftype}", "type_mismatch")
            value = _literal(ftype, value)
    except regex.RegexError as exc:
        return bad(f"invalid regular expression {value!r}: {exc}", "bad_regex")
    except ValueError as exc:
        return bad(f"{cond.field} is {ftype}: {exc}", "type_mismatch")
    return Cmp(cond.field, op, value)


def _literal(ftype: str, value: Any) -> Any:
    if isinstance(value, str) and ftype in ("integer", "number", "boolean"):
        raise ValueError(f"expected a {ftype}, got the text {value!r}")
    if ftype == "string" and not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return coerce(ftype, value)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


#: the condition union's discriminator tags: pydantic puts the chosen one in an error's location
#: (``when.not.not.field.eqq``), where it is no key of the file
_CONDITION_TAGS = {"all", "any", "not", "always", "field"}


def _pydantic_problem(src: SourceData, err: Mapping[str, Any]) -> Problem:
    loc = tuple(err["loc"])
    data_loc: list[Any] = []
    rest: list[Any] = []  # the parts of loc not in the file (a missing key)
    node: Any = src.data
    tag_next = False  # the next part of loc names the union member of a condition
    for part in loc:
        if tag_next and part in _CONDITION_TAGS:
            tag_next = False
            continue
        # pydantic names fields by their alias (``in``, ``not``), as the file spells them
        if isinstance(node, dict) and part in node:
            node = node[part]
            tag_next = part in ("when", "not")
            data_loc.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            tag_next = data_loc[-1] in ("all", "any")  # the root is a mapping: a list has a parent key
            data_loc.append(part)
        else:
            rest.append(part)
    where = None  # outside a rule: the path in the file
    if len(data_loc) >= 2 and data_loc[0] == "rules" and isinstance(data_loc[1], int):
        rule = src.data["rules"][data_loc[1]]
        rid = rule.get("id") if isinstance(rule, dict) else None
        label = str(rid) if rid else f"rules[{data_loc[1]}]"
        inner = _loc(data_loc[2:])
        where = f"{label}:{inner}" if inner else label
    msg = plain_message(err) or err["msg"].removeprefix("Value error, ")
    missing = err["type"] == "missing"
    if missing:
        msg = f"{_loc(rest)}: field required"  # the missing key is never in the file
    elif err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    return src.problem(msg, data_loc, err["type"], where)
