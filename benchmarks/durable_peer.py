"""durable-rules used directly (no Herald wrapper) as a peer: the workload's eligibility and personalization
as two JSON rulesets on one ``Host``, posted as events (durable's own first-hit behaviour) with a fresh
session per row that is deleted afterwards — what a careful direct user must do to stay under durable's
1,024-live-session limit. A catch-all rule with the lowest priority keeps every session alive until it
is deleted (deleting a session no rule touched crashes the process). Benchmarks only: this file is
outside the packages whose imports the architecture test fences.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from durable.engine import Host

from benchmarks.peers import STEPS, Decision, _decide

_OPS = {"eq": None, "gte": "$gte", "lt": "$lt"}


def _atom(field: str, op: str, value) -> dict:
    if op == "in":
        return {"$or": [{field: v} for v in value]}
    if op == "between":
        return {"$and": [{"$gte": {field: value[0]}}, {"$lte": {field: value[1]}}]}
    if op == "contains":
        return {"$iany": {field: {"$i": value}}}
    if op == "eq":
        return {field: value}
    return {_OPS[op]: {field: value}}


def _record(hits: dict[str, str | None], out: str) -> Callable[[object], None]:
    # an action taking one argument: durable treats a two-argument one as asynchronous
    def action(c):
        hits[c.m["sid"]] = out

    return action


def durable_peer() -> Callable[[list[dict]], list[Decision]]:
    """A per-row decider: blocked → eligibility → variant → first reachable channel, rules in durable."""
    host = Host()
    hits: dict[str, str | None] = {}
    names = {}
    for step, rules, _ in STEPS:
        name = f"peer-{step}-{id(host)}"
        names[step] = name
        definition = {}
        for pri, (atoms, out) in enumerate(rules):
            cond = {"$and": [{"_t": 1}, *[_atom(*a) for a in atoms]]} if atoms else {"_t": 1}
            definition[f"r{pri}"] = {"pri": pri, "all": [{"m": cond}], "run": _record(hits, out)}
        definition["sentinel"] = {"pri": len(rules) + 1, "all": [{"m": {"_t": 1}}], "run": lambda c: None}
        host.set_rulesets({name: definition})
    sids = (str(i) for i in itertools.count())

    def first(step: str, row: dict) -> str | None:
        sid = next(sids)
        message = {k: v for k, v in row.items() if v is not None}
        message.update(sid=sid, _t=1)
        try:
            host.post(names[step], message)
        finally:
            host.delete_state(names[step], sid)
        return hits.pop(sid, None)

    return lambda rows: [_decide(r, first) for r in rows]
