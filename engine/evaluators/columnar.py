"""The columnar evaluator: the IR compiled into polars expressions over a frame with one row per recipient.

Columns are named by fact path (``customer.tier``, ``time.local_hour``). The semantics are those of the
reference evaluator, row by row: a comparison on a missing (absent column or null) value is false, ``ne``
and ``not_in`` included; ``not`` is plain negation; a literal of a type the column can never equal or be
ordered against gives the answer Python gives (``eq`` false, ``ne`` true, ordering false); ``matches`` is
polars' Rust regex given the RE2 meaning of the pattern (``engine.rulefiles.regex.to_polars``): linear time,
same answers as the per-recipient evaluators' RE2.

Hit policy ``first`` compiles to a ``when/then`` chain giving the fired rule id (String, null when none);
``collect`` to the list of fired ids (List(String)).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from engine.rulefiles import regex
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Condition, Not, Ruleset

Schema = Mapping[str, pl.DataType]
_FEW = 4  # string ``in`` lists up to this long compile to ``==`` comparisons
_FALSE = pl.lit(False)
_TRUE = pl.lit(True)


def _kind(dtype: pl.DataType | None) -> str:
    """The Python class of the column's values: num, bool, str, list, null or missing."""
    if dtype is None:
        return "missing"
    if dtype == pl.Null:
        return "null"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_numeric():
        return "num"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "str"
    if isinstance(dtype, pl.List):
        return "list"
    return "other"


def _lit_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    if isinstance(value, str):
        return "str"
    return "other"


def _numeric_pair(col: pl.Expr, ck: str, value: Any) -> tuple[pl.Expr, Any] | None:
    """Column and literal in a form polars compares as Python would, or ``None`` when Python's ``==``
    is always false and ordering raises ``TypeError`` (text against numbers, lists against scalars)."""
    lk = _lit_kind(value)
    if ck == lk and ck in ("num", "str", "bool"):
        return col, value
    if {ck, lk} == {"num", "bool"}:  # bool is an int in Python
        return (col.cast(pl.Int8) if ck == "bool" else col), (int(value) if lk == "bool" else value)
    return None


def _eq(col: pl.Expr, ck: str, value: Any) -> pl.Expr:
    pair = _numeric_pair(col, ck, value)
    return _FALSE if pair is None else (pair[0] == pl.lit(pair[1]))


def _order(col: pl.Expr, ck: str, value: Any, op: str) -> pl.Expr:
    pair = _numeric_pair(col, ck, value)
    if pair is None:
        return _FALSE
    c, v = pair
    return {"lt": c < v, "lte": c <= v, "gt": c > v, "gte": c >= v}[op]


def _is_in(col: pl.Expr, ck: str, values: Any, dtype: pl.DataType | None) -> pl.Expr:
    values = list(values)
    if 0 < len(values) <= _FEW and ck == "str" and all(isinstance(v, str) for v in values):
        return pl.any_horizontal([col == v for v in values])  # a few comparisons beat one hash look-up
    if values and ck == "str" and all(isinstance(v, str) for v in values):
        return col.is_in(pl.Series(values, dtype=pl.String).implode())
    if values and ck == "num" and all(_lit_kind(v) == "num" for v in values):
        if dtype is not None and dtype.is_integer() and all(isinstance(v, int) for v in values):
            return col.is_in(pl.Series(values, dtype=pl.Int64).implode())
        if dtype is not None and dtype.is_float():
            return col.is_in(pl.Series([float(v) for v in values], dtype=pl.Float64).implode())
    parts = [_eq(col, ck, v) for v in values]
    return pl.any_horizontal(parts) if parts else _FALSE


def _matches(col: pl.Expr, pattern: str) -> pl.Expr:
    return col.cast(pl.String).str.contains(regex.to_polars(pattern))


def _cmp(cond: Cmp, schema: Schema, strict: bool = True) -> pl.Expr:
    ck = _kind(schema.get(cond.field))
    op, value = cond.op, cond.value
    if ck == "missing":
        return _TRUE if op == "missing" else _FALSE
    col = pl.col(cond.field)
    if op == "missing":
        return col.is_null()
    if op == "exists":
        return col.is_not_null()
    if ck == "null":
        return _FALSE
    present = col.is_not_null()
    if op == "eq":
        out = _eq(col, ck, value)
    elif op == "ne":
        out = present & ~_eq(col, ck, value).fill_null(False)
    elif op in ("lt", "lte", "gt", "gte"):
        out = _order(col, ck, value, op)
    elif op == "in":
        out = _is_in(col, ck, value, schema.get(cond.field))
    elif op == "not_in":
        out = present & ~_is_in(col, ck, value, schema.get(cond.field)).fill_null(False)
    elif op == "between":
        lo, hi = value
        out = _order(col, ck, lo, "gte") & _order(col, ck, hi, "lte")
    elif op in ("contains", "contains_any"):
        if ck != "list":
            return _FALSE
        items = [value] if op == "contains" else list(value)
        inner = schema[cond.field].inner  # type: ignore[union-attr]
        ik = _kind(inner)
        # ``count_matches`` is about twice as fast as ``list.contains`` (same answer for a non-null literal)
        found = [col.list.count_matches(pl.lit(x)) > 0 for x in items if _lit_kind(x) == ik or ik == "null"]
        out = pl.any_horizontal(found) if found else _FALSE
    elif op == "matches":
        out = _matches(col, value) if ck == "str" else _FALSE
    else:
        raise ValueError(f"unknown operator {op!r}")
    return out.fill_null(False) if strict else out


def _compile(cond: Condition, schema: Schema, strict: bool) -> pl.Expr:
    if isinstance(cond, Always):
        return _TRUE
    if isinstance(cond, All):
        return pl.all_horizontal([_compile(c, schema, strict) for c in cond.items]) if cond.items else _TRUE
    if isinstance(cond, AnyOf):
        return pl.any_horizontal([_compile(c, schema, strict) for c in cond.items]) if cond.items else _FALSE
    if isinstance(cond, Not):
        return ~_compile(cond.item, schema, True)  # negation needs the exact false
    if isinstance(cond, Cmp):
        return _cmp(cond, schema, strict)
    raise ValueError(f"cannot compile condition {cond!r}")


def condition_expr(cond: Condition, schema: Schema) -> pl.Expr:
    """A Boolean expression (never null) equal to the reference ``holds(cond, row)`` on every row."""
    return _compile(cond, schema, True)


def when_condition(cond: Condition, schema: Schema) -> pl.Expr:
    """:func:`condition_expr` for ``pl.when`` only: null where it is false (under Kleene logic a null leaf
    read as false gives the same ``and``/``or``; ``not`` still gets exact operands). Saves a
    ``fill_null`` per comparison."""
    return _compile(cond, schema, False)


def fired_expr(ruleset: Ruleset, schema: Schema) -> pl.Expr:
    """``first``: the fired rule id (String, null when none); ``collect``: the fired ids (List(String))."""
    if ruleset.hit_policy == "first":
        chain: Any = None
        for rule in ruleset.rules:
            cond = when_condition(rule.when, schema)
            if isinstance(rule.when, Always):
                return pl.lit(rule.id) if chain is None else chain.otherwise(pl.lit(rule.id))
            chain = pl.when(cond).then(pl.lit(rule.id)) if chain is None else chain.when(cond).then(pl.lit(rule.id))
        return pl.lit(None, pl.String) if chain is None else chain.otherwise(pl.lit(None, pl.String))
    parts = [pl.when(when_condition(r.when, schema)).then(pl.lit(r.id)) for r in ruleset.rules]
    if not parts:
        return pl.lit([], pl.List(pl.String))
    return pl.concat_list(parts).list.drop_nulls()


def fired_list_expr(ruleset: Ruleset, schema: Schema) -> pl.Expr:
    """The fired ids as List(String) under either hit policy (empty list when none fired)."""
    expr = fired_expr(ruleset, schema)
    if ruleset.hit_policy == "first":
        return pl.when(expr.is_null()).then(pl.lit([], pl.List(pl.String))).otherwise(pl.concat_list(expr))
    return expr


def facts_frame(rows: list[Mapping[str, Any]]) -> pl.DataFrame:
    """A frame of flat fact mappings, one column per fact (plus ``__row``); types inferred (lists as List(String))."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {"__row": pl.Series("__row", range(len(rows)), dtype=pl.Int64)}
    for name in names:
        values = [row.get(name) for row in rows]
        if any(isinstance(v, (list, tuple)) for v in values):
            columns[name] = pl.Series(name, [list(v) if v is not None else None for v in values],
                                      dtype=pl.List(pl.String), strict=False)
        else:
            columns[name] = pl.Series(name, values, strict=False)
    return pl.DataFrame(columns)


class ColumnarEvaluator:
    """Evaluates rulesets over whole frames; ``fired`` (one fact mapping) satisfies the Evaluator protocol."""

    name = "columnar"

    def fired_frame(self, ruleset: Ruleset, frame: pl.DataFrame | pl.LazyFrame) -> list[tuple[str, ...]]:
        """Fired rule ids of every row of ``frame``, in row order."""
        lazy = frame.lazy()
        schema = lazy.collect_schema()
        out = lazy.with_columns(fired_list_expr(ruleset, schema).alias("__fired")).select("__fired").collect()
        return [tuple(v) for v in out["__fired"].to_list()]

    def fired(self, ruleset: Ruleset, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Fired rule ids for one fact mapping (a one-row frame; slow, for tests and single requests)."""
        return self.fired_frame(ruleset, facts_frame([facts]))[0]
