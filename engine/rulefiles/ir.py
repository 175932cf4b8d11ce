"""The neutral intermediate representation every evaluator compiles from.

Conditions are small frozen trees; literals are already normalised (dates as ISO strings, ``in`` sets as
tuples, regexes validated). Rules are sorted by (priority, position in file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

#: Comparison operators, all of which are false when the field is missing (except ``missing``).
OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains", "contains_any",
             "matches", "exists", "missing")


@dataclass(frozen=True, slots=True)
class Cmp:
    """``field op value``: one comparison on one fact."""

    field: str
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class All:
    """True when every item is true."""

    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """True when at least one item is true."""

    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """True when the item is false (a comparison on a missing field is false, so its ``not`` is true)."""

    item: Condition


@dataclass(frozen=True, slots=True)
class Always:
    """Always true."""


Condition = Cmp | All | AnyOf | Not | Always

#: a registered rule kind's name (``engine.contracts.RuleKind``; the registry knows which exist)
Kind = str
HitPolicy = Literal["first", "collect"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: id, priority (lower wins), condition and the ``then`` data the pipeline acts on."""

    id: str
    priority: int
    when: Condition
    then: Mapping[str, Any]


@dataclass(frozen=True)
class Ruleset:
    """A compiled ruleset. ``version`` is a content hash of the rules (tests excluded)."""

    name: str
    kind: Kind
    hit_policy: HitPolicy
    rules: tuple[Rule, ...]
    version: str
    source: str | None = None
    tests: tuple[Mapping[str, Any], ...] = ()

    @cached_property
    def key(self) -> str:
        """``name@version``: the name under which evaluators cache this exact ruleset."""
        return f"{self.name}@{self.version}"

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def fields(self) -> set[str]:
        """Every field path the conditions read."""
        out: set[str] = set()
        for r in self.rules:
            _collect_fields(r.when, out)
        return out


def _collect_fields(cond: Condition, out: set[str]) -> None:
    if isinstance(cond, Cmp):
        out.add(cond.field)
    elif isinstance(cond, (All, AnyOf)):
        for c in cond.items:
            _collect_fields(c, out)
    elif isinstance(cond, Not):
        _collect_fields(cond.item, out)
