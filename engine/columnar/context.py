"""What a columnar optimizer step works through: the message, its rulesets as expressions, the decision so
far (read and changed with typed methods) and the channels' reachability.

The decision lives in columns whose names are this module's business (plugins never spell them): whether
the row is included and why not, the variant, the ordered channels, the send instant, and per ruleset kind
the fired rules (under hit policy ``first`` the index of the fired rule, Int32, ``-1`` when none fired; under
``collect`` the fired ids, List(String); null where the ruleset did not run for that row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from engine.contracts import RuleKind
from engine.evaluators.columnar import fired_expr, when_condition
from engine.model import Message, Reachability
from engine.registry import Registry
from engine.rulefiles.ir import Always

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

INCLUDED, REASON, VARIANT, CHANNELS, SEND_AT = "_included", "_reason", "_variant", "_channels", "_send_at"
CHANNEL_CODE, CHANNEL_TABLE = "_channel_code", "channel_table"
REACHABLE = [str(r) for r in Reachability if r.reachable]
_MAX_TABLE = 1 << 16


_FIRED = "_fired:"


def fired_column(kind: str) -> str:
    """The name of the column recording the fired rules of the ruleset of ``kind``."""
    return f"{_FIRED}{kind}"


def fired_kind(column: str) -> str | None:
    """The ruleset kind a fired-rules column records (``None`` for any other column)."""
    return column[len(_FIRED):] if column.startswith(_FIRED) else None


class ColumnarContext:
    """The shared state of one bulk evaluation, and the only way a columnar step reads or changes the decision
    (see ``engine.contracts.ColumnarOptimizer``). Every ``set_*``/``exclude*`` method changes the included
    rows only and returns the new frame.

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

    # --- the decision so far -------------------------------------------------------------------------

    @property
    def included(self) -> pl.Expr:
        """True where the recipient is still included."""
        return pl.col(INCLUDED)

    @property
    def variant(self) -> pl.Expr:
        """The chosen variant (String; null until a step chooses one)."""
        return pl.col(VARIANT)

    @property
    def channels(self) -> pl.Expr:
        """The candidate, then surviving, channels in order (List(String))."""
        return pl.col(CHANNELS)

    @property
    def send_at(self) -> pl.Expr:
        """The planned send instant (Datetime, UTC)."""
        return pl.col(SEND_AT)

    def set_variant(self, frame: pl.LazyFrame, variant: pl.Expr) -> pl.LazyFrame:
        """Set the variant of the included rows."""
        return frame.with_columns(pl.when(pl.col(INCLUDED)).then(variant).otherwise(pl.col(VARIANT)).alias(VARIANT))

    def set_channels(self, frame: pl.LazyFrame, channels: pl.Expr) -> pl.LazyFrame:
        """Set the ordered channels (List(String)) of the included rows."""
        return frame.with_columns(pl.when(pl.col(INCLUDED)).then(channels).otherwise(pl.col(CHANNELS))
                                  .alias(CHANNELS))

    def set_send_at(self, frame: pl.LazyFrame, send_at: pl.Expr) -> pl.LazyFrame:
        """Set the planned send instant (Datetime, UTC) of the included rows."""
        return frame.with_columns(pl.when(pl.col(INCLUDED)).then(send_at).otherwise(pl.col(SEND_AT)).alias(SEND_AT))

    # --- rules -----------------------------------------------------------------------------------------

    def has(self, kind: str) -> bool:
        """Whether the message has a ruleset of ``kind``."""
        return kind in self.message.rulesets

    def kind(self, name: str) -> RuleKind:
        """The registered rule kind ``name`` (its outcome, its then model …)."""
        return self.registry.rule_kind(name)

    def fired_index(self, kind: str) -> pl.Expr:
        """After :meth:`run_rules` on a ``first`` ruleset: the index of the fired rule in ``ruleset.rules``
        (Int32; ``-1`` when none fired; null where the ruleset did not run)."""
        if self.message.rulesets[kind].hit_policy != "first":
            raise ValueError(f"the {kind} ruleset collects: read its fired rules with outcome()")
        return pl.col(fired_column(kind))

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
        """Evaluate the ruleset of ``kind`` on the included rows (and ``where``), recording the fired rules."""
        run = pl.col(INCLUDED) if where is None else pl.col(INCLUDED) & where
        return frame.with_columns(pl.when(run).then(self.fired(kind)).alias(fired_column(kind)))

    def outcome_table(self, kind: str, key: str) -> list[Any]:
        """Under hit policy ``first``: one key of the kind's outcome for "none fired", then for each rule
        (so ``table[fired_index + 1]`` is the row's value)."""
        rs = self.message.rulesets[kind]
        outcome = self.kind(kind).outcome
        return [outcome([])[key], *(outcome([r.then])[key] for r in rs.rules)]

    def outcome(self, kind: str, key: str, dtype: PolarsDataType | None = None) -> pl.Expr:
        """One key of the ruleset's outcome (its kind's ``outcome``) per row, from the recorded fired rules;
        ``dtype`` is the values' type (inferred when not given)."""
        rs = self.message.rulesets[kind]
        outcome = self.kind(kind).outcome
        col = pl.col(fired_column(kind))
        if rs.hit_policy == "first":  # one gather from the outcomes table (index + 1: "none fired" first)
            return pl.lit(pl.Series(self.outcome_table(kind, key), dtype=dtype)).gather(col + 1)
        thens = {r.id: r.then for r in rs.rules}

        def per_unique(s: pl.Series) -> pl.Series:
            combos = s.drop_nulls().unique().to_list()
            values = [outcome([thens[i] for i in c])[key] for c in combos]
            return s.replace_strict(combos, values, default=None, return_dtype=dtype)

        return col.map_batches(per_unique, return_dtype=dtype)

    def exclude(self, frame: pl.LazyFrame, reason: pl.Expr) -> pl.LazyFrame:
        """Exclude the included rows where ``reason`` (String) is not null, with that reason (the first reason
        wins); an excluded row's channels no longer matter."""
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
        """True where the row's variant has a creative on ``channel`` (or the channel has a default one)."""
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
        """Record the included rows' channel code (see :meth:`channel_code`) and set their channels from it;
        the plan's finish reads the code instead of the lists while no later step changes the channels."""
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
