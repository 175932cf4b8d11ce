"""The same decisions (exclusion reason, variant, channel) written for each peer engine.

Every peer gets flat rows with ``local_hour`` already computed per time zone (input preparation, not
timed) and decides: blocked → eligibility (first hit) → variant (first hit) → first reachable channel
(contact present and subscription status not blocking).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl

from benchmarks.workload import CHANNELS, ELIGIBILITY, channel_checks, personalization, row_reachable

Decision = tuple[str | None, str | None, str | None]
STEPS = [("reason", ELIGIBILITY, None), ("variant", personalization(), None)]


# --- hand-written polars when/then chain -------------------------------------------------------------

def _pl_atom(field: str, op: str, value) -> pl.Expr:
    c = pl.col(field)
    if op == "in":
        return c.is_in(list(value))
    if op == "eq":
        return c == value
    if op == "gte":
        return c >= value
    if op == "lt":
        return c < value
    if op == "between":
        return c.is_between(value[0], value[1])
    return c.list.contains(value)


def _pl_chain(rules, default=None) -> pl.Expr:
    chain = None
    for atoms, out in rules:
        cond = pl.all_horizontal([_pl_atom(*a).fill_null(False) for a in atoms]) if atoms else pl.lit(True)
        chain = pl.when(cond).then(pl.lit(out)) if chain is None else chain.when(cond).then(pl.lit(out))
    return chain.otherwise(pl.lit(default, pl.String))


def _pl_check(op: str, column: str, values: tuple) -> pl.Expr:
    c = pl.col(column)
    if op == "present":
        return c.is_not_null()
    if op == "null":
        return c.is_null()
    if op == "not_in":
        return ~c.is_in(list(values)).fill_null(False)
    if op == "in":
        return c.is_in(list(values)).fill_null(False)
    return ~c.fill_null(False)  # not_true


def polars_chain(frame: pl.DataFrame) -> pl.DataFrame:
    """The whole decision as one hand-written ``when/then`` plan over the frame."""
    channel = None
    for c in CHANNELS:
        ok = pl.all_horizontal([_pl_check(*check) for check in channel_checks(c)])
        channel = pl.when(ok).then(pl.lit(c)) if channel is None else channel.when(ok).then(pl.lit(c))
    channel = channel.otherwise(pl.lit(None, pl.String))
    reason = (pl.when(pl.col("blocked").fill_null(False)).then(pl.lit("blocked"))
              .otherwise(_pl_chain(ELIGIBILITY)))
    reason = pl.when(reason.is_null() & channel.is_null()).then(pl.lit("no_reachable_channel")).otherwise(reason)
    inc = reason.is_null()
    return frame.lazy().select(reason.alias("reason"), pl.when(inc).then(_pl_chain(personalization())).alias("variant"),
                               pl.when(inc).then(channel).alias("channel")).collect()


# --- per-row peers -------------------------------------------------------------------------------------

def _decide(row: dict, first: Callable[[str, dict], str | None]) -> Decision:
    reason = "blocked" if row.get("blocked") is True else first("reason", row)
    if reason is None:
        channel = next((c for c in CHANNELS if row_reachable(row, c)), None)
        if channel is None:
            return ("no_reachable_channel", None, None)
        return (None, first("variant", row), channel)
    return (reason, None, None)


def rule_engine_peer() -> Callable[[list[dict]], list[Decision]]:
    """rule-engine: one ``Rule`` per rule, first hit in a Python loop."""
    import rule_engine

    ctx = rule_engine.Context(default_value=None)

    def text(field, op, value):
        guard = f"{field} != null and "
        if op == "in":
            return guard + f"{field} in {json.dumps(list(value))}"
        if op == "eq":
            return guard + f"{field} == {json.dumps(value)}"
        if op == "gte":
            return guard + f"{field} >= {value}"
        if op == "lt":
            return guard + f"{field} < {json.dumps(value)}"
        if op == "between":
            return guard + f"{field} >= {value[0]} and {field} <= {value[1]}"
        return guard + f"{json.dumps(value)} in {field}"

    tables = {name: [(rule_engine.Rule(" and ".join(f"({text(*a)})" for a in atoms) or "true", context=ctx), out)
                     for atoms, out in rules] for name, rules, _ in STEPS}

    def first(name, row):
        return next((out for rule, out in tables[name] if rule.matches(row)), None)

    return lambda rows: [_decide(r, first) for r in rows]


def _zen_text(field, op, value):
    guard = f"{field} != null and "
    if op == "in":
        return guard + f"{field} in {json.dumps(list(value))}"
    if op == "eq":
        return guard + f"{field} == {json.dumps(value)}"
    if op == "gte":
        return guard + f"{field} >= {value}"
    if op == "lt":  # zen orders dates, not text
        return guard + f"date({field}) < date({json.dumps(value)})"
    if op == "between":
        return guard + f"{field} >= {value[0]} and {field} <= {value[1]}"
    return guard + f"contains({field}, {json.dumps(value)})"


def _zen_check(op: str, column: str, values: tuple) -> str:
    name = column.replace(".", "_")  # dots are paths in zen
    if op == "present":
        return f"{name} != null"
    if op == "null":
        return f"{name} == null"
    if op == "not_in":
        return f"not ({name} != null and {name} in {json.dumps(list(values))})"
    if op == "in":
        return f"({name} != null and {name} in {json.dumps(list(values))})"
    return f"{name} != true"  # not_true


def zen_content() -> str:
    """One JDM graph: input → three first-hit decision tables (reason, variant, channel) → output."""
    def table(id_, rules, out):
        return {"id": id_, "type": "decisionTableNode", "name": id_, "position": {"x": 0, "y": 0},
                "content": {"hitPolicy": "first", "inputs": [{"id": "c", "name": "cond", "field": ""}],
                            "outputs": [{"id": "o", "name": out, "field": out}],
                            "rules": [{"_id": f"r{i}", "c": c, "o": json.dumps(v)} for i, (c, v) in enumerate(rules)]}}

    elig = [("blocked == true", "blocked")] + [(" and ".join(_zen_text(*a) for a in atoms), r) for atoms, r in ELIGIBILITY]
    pers = [(" and ".join(_zen_text(*a) for a in atoms), v) for atoms, v in personalization()]
    chan = [(" and ".join(_zen_check(*check) for check in channel_checks(c)), c) for c in CHANNELS]
    nodes = [{"id": "in", "type": "inputNode", "name": "in", "position": {"x": 0, "y": 0}},
             table("elig", elig, "reason"), table("pers", pers, "variant"), table("chan", chan, "channel"),
             {"id": "out", "type": "outputNode", "name": "out", "position": {"x": 0, "y": 0}}]
    edges = [{"id": f"e{i}", "sourceId": s, "targetId": t, "type": "edge"} for i, (s, t) in enumerate(
        [("in", "elig"), ("in", "pers"), ("in", "chan"), ("elig", "out"), ("pers", "out"), ("chan", "out")])]
    return json.dumps({"nodes": nodes, "edges": edges})


def _zen_decision(res: dict) -> Decision:
    reason, variant, channel = res.get("reason"), res.get("variant"), res.get("channel")
    if reason is None and channel is None:
        reason = "no_reachable_channel"
    return (reason, None, None) if reason else (None, variant, channel)


def zen_rows(rows: list[dict]) -> list[dict]:
    """Rows as zen wants them: dotted keys (``subscription.x``, ``handle_error.x``) renamed (dots are paths in zen)."""
    return [{k.replace(".", "_"): v for k, v in r.items()} for r in rows]


def zen_peer(batch: bool) -> Callable[[list[dict]], list[Decision]]:
    """zen-engine: ``evaluate`` per row, or ``evaluate_batch`` over all rows."""
    import zen

    content = zen_content()
    engine = zen.ZenEngine({"loader": lambda key: content})
    decision = engine.create_decision(content)

    def run(rows):
        rows = zen_rows(rows)
        if batch:
            out = engine.evaluate_batch([{"key": "bench", "context": r} for r in rows])
            return [_zen_decision(o["data"]["result"]) for o in out]
        return [_zen_decision(decision.evaluate(r)["result"]) for r in rows]

    return run
