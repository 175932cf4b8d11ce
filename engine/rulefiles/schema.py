"""The rule-file schema (pydantic, extra fields forbidden) and its JSON Schema export.

What a rule's ``then`` holds depends on its kind: registered rule kinds (``engine.contracts.RuleKind``) bring
their own ``then`` models, so this module names no kind."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic.json_schema import models_json_schema

from engine.contracts import RuleKind

Scalar = str | int | float | bool | dt.date | dt.datetime
_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains", "contains_any",
        "matches", "exists", "missing")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Comparison(_Strict):
    """``{field: customer.tier, eq: gold}``: exactly one operator per comparison."""

    field: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)+$", description="a dotted field path")
    eq: Scalar | None = None
    ne: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(None, min_length=1)
    between: tuple[Scalar, Scalar] | None = None
    contains: Scalar | None = None
    contains_any: list[Scalar] | None = Field(None, min_length=1)
    matches: str | None = None
    exists: Literal[True] | None = None
    missing: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Comparison:
        given = [op for op in _OPS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(given) != 1:
            raise ValueError(f"a comparison needs exactly one operator of {', '.join(_OPS)}; got {given or 'none'}")
        return self

    @property
    def operator(self) -> tuple[str, Any]:
        """(operator name, literal)."""
        for op in _OPS:
            value = getattr(self, "in_" if op == "in" else op)
            if value is not None:
                return op, value
        raise AssertionError("validated")


class AllOf(_Strict):
    """Every condition holds."""

    all: list[Condition] = Field(min_length=1)


class AnyOfCond(_Strict):
    """At least one condition holds."""

    any: list[Condition] = Field(min_length=1)


class NotCond(_Strict):
    """The condition does not hold."""

    not_: Condition = Field(alias="not")


class AlwaysCond(_Strict):
    """Always true: a default rule."""

    always: Literal[True]


def _tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return _MODEL_TAGS.get(type(value).__name__)
    if isinstance(value, dict):
        for key in ("all", "any", "not", "always", "field"):
            if key in value:
                return key
    return None


_MODEL_TAGS = {"AllOf": "all", "AnyOfCond": "any", "NotCond": "not", "AlwaysCond": "always", "Comparison": "field"}

Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOfCond, Tag("any")]
    | Annotated[NotCond, Tag("not")]
    | Annotated[AlwaysCond, Tag("always")]
    | Annotated[Comparison, Tag("field")],
    Discriminator(_tag, custom_error_type="condition", custom_error_message=(
        "a condition is one of {all: [...]}, {any: [...]}, {not: ...}, {always: true} or {field: ..., <op>: ...}")),
]
AllOf.model_rebuild()
AnyOfCond.model_rebuild()
NotCond.model_rebuild()


class RuleModel(_Strict):
    """One rule: an id unique in the file, a priority (lower fires first), a condition and its outcome."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    priority: int = Field(ge=0)
    description: str | None = None
    when: Condition
    then: dict[str, Any]


class RuleTest(_Strict):
    """An example that runs as a test: facts given, and the fired rules (and outcome) expected."""

    name: str | None = None
    given: dict[str, dict[str, Any]]
    expect: dict[str, Any]


class RuleFile(_Strict):
    """A ruleset file (YAML or JSON, same schema)."""

    ruleset: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: str = Field(description="a registered rule kind (its plugin decides what rules mean)")
    hit_policy: Literal["first", "collect"] = "first"
    description: str | None = None
    owner: str | None = None
    rules: list[RuleModel] = Field(min_length=1)
    tests: list[RuleTest] = Field(default_factory=list)


def json_schema(kinds: Mapping[str, RuleKind]) -> dict[str, Any]:
    """The JSON Schema of rule files for the registered ``kinds`` (kept in ``rules/schema.json`` for the
    built-in plugins): ``kind`` is one of them, and each kind's ``then`` model and hit policies apply to the
    files of that kind."""
    models = [(RuleFile, "validation"), *((k.then_model, "validation") for k in kinds.values())]
    refs, defs = models_json_schema(models, by_alias=True, ref_template="#/$defs/{model}")
    schema = defs["$defs"].pop(RuleFile.__name__)
    schema["$defs"] = defs["$defs"]
    schema["properties"]["kind"] = {"enum": sorted(kinds), "title": "Kind",
                                    "description": "; ".join(f"{n}: {k.description}" if k.description else n
                                                             for n, k in sorted(kinds.items()))}
    branches = []
    for name, kind in sorted(kinds.items()):
        then = refs[(kind.then_model, "validation")]
        props: dict[str, Any] = {"rules": {"items": {"properties": {"then": then}}}}
        if set(kind.hit_policies) != {"first", "collect"}:
            props["hit_policy"] = {"enum": list(kind.hit_policies)}
        branches.append({"if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
                         "then": {"properties": props}})
    if branches:
        schema["allOf"] = branches
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://herald.dev/schema/ruleset.json"
    return schema


def json_schema_text(kinds: Mapping[str, RuleKind]) -> str:
    """The JSON Schema as the canonical text written to ``rules/schema.json``."""
    return json.dumps(json_schema(kinds), indent=2, sort_keys=True) + "\n"
