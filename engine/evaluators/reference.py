"""The reference evaluator: the simplest possible interpreter of the IR. The oracle for every other one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.rulefiles import regex
from engine.rulefiles.ir import All, Always, AnyOf, Condition, Not, Ruleset


def holds(cond: Condition, facts: Mapping[str, Any]) -> bool:
    """Whether ``cond`` is true for ``facts``. A comparison on a missing (absent or null) field is false."""
    if isinstance(cond, Always):
        return True
    if isinstance(cond, All):
        return all(holds(c, facts) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(holds(c, facts) for c in cond.items)
    if isinstance(cond, Not):
        return not holds(cond.item, facts)
    value = facts.get(cond.field)
    if cond.op == "missing":
        return value is None
    if value is None:
        return False
    try:
        return _compare(cond.op, value, cond.value)
    except TypeError:  # a value of the wrong type never matches
        return False


def _compare(op: str, v: Any, lit: Any) -> bool:
    if op == "exists":
        return True
    if op == "eq":
        return v == lit
    if op == "ne":
        return v != lit
    if op == "lt":
        return v < lit
    if op == "lte":
        return v <= lit
    if op == "gt":
        return v > lit
    if op == "gte":
        return v >= lit
    if op == "in":
        return v in lit
    if op == "not_in":
        return v not in lit
    if op == "between":
        return lit[0] <= v <= lit[1]
    if op == "contains":
        return isinstance(v, (list, tuple)) and lit in v
    if op == "contains_any":
        return isinstance(v, (list, tuple)) and any(x in v for x in lit)
    if op == "matches":
        return isinstance(v, str) and regex.fullmatch(lit)(v)
    raise ValueError(f"unknown operator {op!r}")


class ReferenceEvaluator:
    """Walks the IR for every evaluation. Slow and obviously right."""

    name = "reference"

    def fired(self, ruleset: Ruleset, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Fired rule ids in priority order; only the first under hit policy ``first``."""
        out = []
        for rule in ruleset.rules:
            if holds(rule.when, facts):
                if ruleset.hit_policy == "first":
                    return (rule.id,)
                out.append(rule.id)
        return tuple(out)
