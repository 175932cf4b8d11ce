"""What a columnar optimizer step may consult: the message, its rulesets as expressions, and frame helpers.

Fired rules are recorded in one column per ruleset kind, ``_fired:<kind>``: under hit policy ``first`` the
index of the fired rule (Int32; ``-1`` when none fired), under ``collect`` the fired ids (List(String));
null where the ruleset did not run for that row (the row was already excluded, or the step skipped it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from engine.evaluators.columnar import fired_expr, when_condition
from engine.model import Message, Reachability
from engine.registry import Registry
from engine.rulefiles.ir import Always
from engine.rulefiles.outcome import outcome

INCLUDED, REASON, VARIANT, CHANNELS, SEND_AT = "_included", "_reason", "_variant", "_channels", "_send_at"
CHANNEL_CODE, CHANNEL_TABLE = "_channel_code", "channel_table"
REACHABLE = [str(r) for r in Reachability if r.reachable]
_MAX_TABLE = 1 << 16
_OUT_TYPES = {"variant": pl.String, "exclude": pl.String, "include": pl.Boolean, "channels": pl.List(pl.String)}


def fired_column(kind: str) -> str:
    """The name of the column recording the fired rules of the ruleset of ``kind``."""
    return f"_fired:{kind}"


class ColumnarContext:
    """The shared state of one bulk evaluation (see ``engine.contracts.ColumnarOptimizer``).

    :param schema: the fact columns' types (used to compile conditions).
    :param reach: channel name → Boolean expression "reachable on this channel".
    """

    def __init__(self, message: Message, registry: Registry, at: datetime, schema: Mapping[str, pl.DataType],
                 reach: Mapping[str, pl.Expr], preview: bool = True):
        self.message = message
        self.registry = registry
        self.at = at
        self.schema = dict(schema)
        self.preview = preview
        self._reach = dict(reach)
        self.state: dict[str, Any] = {}

    def has(self, kind: str) -> bool:
        """Whether the message has a ruleset of ``kind``."""
        return kind in self.message.rulesets

    def flag(self, name: str) -> pl.Expr:
        """True where the fact ``name`` is the boolean ``True`` (false when missing or of another type)."""
        if self.schema.get(name) == pl.Boolean:
            return pl.col(name).fill_null(False)
        return pl.lit(False)

    def fired(self, kind: str) -> pl.Expr:
        """The fired-rule expression of the ruleset of ``kind`` (index under first, ids under collect)."""
        rs = self.message.rulesets[kind]
        if rs.hit_policy == "collect":
            return fired_expr(rs, self.schema)
        chain: Any = None
        for i, rule in enumerate(rs.rules):
            if isinstance(rule.when, Always):
                return pl.lit(i, pl.Int32) if chain is None else chain.otherwise(pl.lit(i, pl.Int32))
            cond = when_condition(rule.when, self.schema)
            chain = (pl.when(cond) if chain is None else chain.when(cond)).then(pl.lit(i, pl.Int32))
        return pl.lit(-1, pl.Int32) if chain is None else chain.otherwise(pl.lit(-1, pl.Int32))

    def run_rules(self, frame: pl.LazyFrame, kind: str, where: pl.Expr | None = None) -> pl.LazyFrame:
        """Evaluate the ruleset of ``kind`` on the included rows (and ``where``), recording ``_fired:<kind>``."""
        run = pl.col(INCLUDED) if where is None else pl.col(INCLUDED) & where
        return frame.with_columns(pl.when(run).then(self.fired(kind)).alias(fired_column(kind)))

    def outcome_table(self, kind: str, key: str) -> list[Any]:
        """Under hit policy ``first``: one key of the outcome for "none fired", then for each rule (index + 1)."""
        rs = self.message.rulesets[kind]
        return [outcome(kind, [])[key], *(outcome(kind, [r.then])[key] for r in rs.rules)]

    def outcome(self, kind: str, key: str) -> pl.Expr:
        """One key of the ruleset's outcome (``engine.outcome``) per row, from the recorded fired rules."""
        rs = self.message.rulesets[kind]
        dtype = _OUT_TYPES.get(key)
        col = pl.col(fired_column(kind))
        if rs.hit_policy == "first":  # one gather from the outcomes table (index + 1: "none fired" first)
            return pl.lit(pl.Series(self.outcome_table(kind, key), dtype=dtype)).gather(col + 1)
        thens = {r.id: r.then for r in rs.rules}

        def per_unique(s: pl.Series) -> pl.Series:
            combos = s.drop_nulls().unique().to_list()
            values = [outcome(kind, [thens[i] for i in c])[key] for c in combos]
            return s.replace_strict(combos, values, default=None, return_dtype=dtype)

        return col.map_batches(per_unique, return_dtype=dtype)

    def exclude(self, frame: pl.LazyFrame, reason: pl.Expr) -> pl.LazyFrame:
        """Exclude the included rows where ``reason`` is not null, with that reason (the first reason wins).
        ``_channels`` of excluded rows is left as it is (a decision has no channel once excluded)."""
        hit = pl.col(INCLUDED) & reason.is_not_null()
        return frame.with_columns(
            pl.when(hit).then(pl.lit(False)).otherwise(pl.col(INCLUDED)).alias(INCLUDED),
            pl.when(hit).then(reason).otherwise(pl.col(REASON)).alias(REASON),
        )

    def exclude_where(self, frame: pl.LazyFrame, hit: pl.Expr, reason: pl.Expr) -> pl.LazyFrame:
        """:meth:`exclude` with the rows to exclude given as a Boolean ``hit`` (``reason`` is read only there)."""
        hit = pl.col(INCLUDED) & hit.fill_null(False)
        return frame.with_columns(pl.col(INCLUDED) & ~hit, pl.when(hit).then(reason).otherwise(pl.col(REASON)).alias(REASON))

    def creative_ok(self, channel: str) -> pl.Expr:
        """True where the row's ``_variant`` has a creative on ``channel`` (or the channel has a default one)."""
        variants = {c.variant for c in self.message.creatives if c.channel == channel}
        if "default" in variants:
            return pl.lit(True)
        return pl.col(VARIANT).is_in(pl.Series(sorted(variants), dtype=pl.String).implode()).fill_null(False)

    def reachable(self, channel: str) -> pl.Expr:
        """True where the customer is reachable on ``channel``."""
        return self._reach[channel]

    def channel_code(self, index: pl.Expr, lists: Sequence[Sequence[str]], keep: Mapping[str, pl.Expr]
                     ) -> tuple[pl.Expr, list[list[str]]] | None:
        """``lists[index]`` without the channels whose ``keep`` is false, as a code (UInt32) into a table of
        every (list, surviving-channel mask) pair: ``(code expression, table)``; ``None`` when that table
        would be too large (then use :meth:`keep_channels`). A null ``index`` gives a null code."""
        universe = list(dict.fromkeys(c for chosen in lists for c in chosen))
        if len(lists) << len(universe) > _MAX_TABLE:
            return None
        pos = {c: i for i, c in enumerate(universe)}
        table = [[c for c in chosen if m >> pos[c] & 1] for chosen in lists for m in range(1 << len(universe))]
        bits = [keep[c].fill_null(False).cast(pl.UInt32) * (1 << i) for i, c in enumerate(universe)]
        mask = pl.sum_horizontal(bits) if bits else pl.lit(0, pl.UInt32)
        return index.cast(pl.UInt32) * (1 << len(universe)) + mask, table

    def set_channel_code(self, frame: pl.LazyFrame, code: pl.Expr, table: list[list[str]]) -> pl.LazyFrame:
        """Record the included rows' channel code (see :meth:`channel_code`) in ``_channel_code`` and set
        ``_channels`` from it; the plan's finish reads the code instead of the lists while no later step
        changes ``_channels``."""
        self.state[CHANNEL_TABLE] = table
        inc = pl.col(INCLUDED)
        frame = frame.with_columns(pl.when(inc).then(code).alias(CHANNEL_CODE))
        lists = pl.lit(pl.Series(table, dtype=pl.List(pl.String))).gather(pl.col(CHANNEL_CODE))
        return frame.with_columns(pl.when(inc).then(lists).otherwise(pl.col(CHANNELS)).alias(CHANNELS))

    def keep_channels(self, candidates: pl.Expr | Sequence[str], keep: Mapping[str, pl.Expr],
                      universe: Sequence[str]) -> pl.Expr:
        """The ``candidates`` list (List(String), or one list for every row) without the channels whose
        ``keep`` expression is false."""
        if not isinstance(candidates, pl.Expr):
            if not candidates:
                return pl.lit([], pl.List(pl.String))
            return pl.concat_list([pl.when(keep[c]).then(pl.lit(c)) for c in candidates]).list.drop_nulls()
        def kept(item: pl.Expr) -> pl.Expr:
            chain: Any = None
            for name in universe:
                chain = (pl.when(item == name) if chain is None else chain.when(item == name)).then(keep[name])
            return pl.lit(False) if chain is None else chain.otherwise(pl.lit(False))

        slots = []
        for j in range(len(universe)):
            item = candidates.list.get(j, null_on_oob=True)
            slots.append(pl.when(kept(item)).then(item))
        if not slots:
            return pl.lit([], pl.List(pl.String))
        return pl.concat_list(slots).list.drop_nulls()
