"""The durable-rules evaluator. The only module that imports ``durable``.

durable-rules' limits, and what this module does about each (see PRODUCT.md §3):

* at most 1,024 live sessions per ruleset: every evaluation uses a fresh session id that is deleted in
  ``finally``; a catch-all sentinel rule (lowest priority, records nothing) makes sure the session always
  exists, because deleting a session that never matched crashes the process;
* errors inside actions are swallowed into session state: the returned state is checked for
  ``exception`` and re-raised as ``EvaluationError``;
* rulesets cannot be replaced: each is registered under a versioned name ``name@version``;
* every ``Host`` starts threads that never stop: one host per process, created on first use;
* no thread safety: registration and evaluation are serialised with one lock;
* a node of its network with more than about 511 successors hangs the process (measured with 2.0.28 in a
  subprocess under a timeout: 511 rules plus the sentinel run, 512 rules hang; one ``in`` of 511 values
  runs, of 512 hangs; ``contains_any`` of 600 values fails to build). Every ``any``/``in`` alternative
  becomes its own path, so a ruleset whose conditions expand to more than :data:`MAX_ALTERNATIVES`
  alternatives (``all`` multiplies, ``any`` adds; see :func:`alternatives`) is refused before durable sees it;
* a non-finite number (``inf``, ``nan``) in a condition or in the facts is not JSON durable can read: such a
  ruleset is refused when loaded, such facts when evaluated (``EvaluationError`` naming the value).

Hit policies map onto durable's own semantics: ``first`` posts an event (only the lowest ``pri`` rule
fires), ``collect`` asserts a fact (every matching rule fires, in ascending ``pri``).

Regular expressions (``matches``) and list emptiness are evaluated in Python and handed to durable as
derived facts, so that every evaluator applies the same regex dialect (RE2, full match: ``engine.rulefiles.regex``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import durable_rules_engine
from durable.engine import Host, MessageNotHandledException

from engine.errors import EvaluationError
from engine.rulefiles import regex
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Condition, Not, Ruleset

_MARK = "_t"
_SENTINEL = "__herald_sentinel__"
_COMPLEMENT = {"lt": "$gte", "lte": "$gt", "gt": "$lte", "gte": "$lt"}
_DURABLE_OP = {"lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}
#: the most condition alternatives a ruleset may expand to on durable (a node fanning out to 512 hangs it)
MAX_ALTERNATIVES = 500


@dataclass
class _Derived:
    """Facts computed in Python before posting: regex results and list emptiness."""

    regexes: dict[str, tuple[str, Callable[[str], bool]]]
    empties: dict[str, str]

    def add(self, facts: Mapping[str, Any], message: dict[str, Any]) -> None:
        for key, (field, match) in self.regexes.items():
            v = facts.get(field)
            if isinstance(v, str):
                message[key] = match(v)
        for key, field in self.empties.items():
            v = facts.get(field)
            if isinstance(v, (list, tuple)):
                message[key] = len(v) == 0


def to_durable(ruleset: Ruleset, action: Callable[[str], Callable[[Any], None]]) -> tuple[dict[str, Any], _Derived]:
    """Compile a ruleset to a durable-rules JSON ruleset (``run`` set to ``action(rule_id)``)."""
    derived = _Derived({}, {})
    rules: dict[str, Any] = {}
    for pri, rule in enumerate(ruleset.rules):
        cond = {"$and": [{_MARK: "e"}, _cond(rule.when, False, derived)]}
        rules[rule.id] = {"pri": pri, "all": [{"m": cond}], "run": action(rule.id)}
    rules[_SENTINEL] = {"pri": len(ruleset.rules) + 1, "all": [{"m": {_MARK: "e"}}], "run": action(_SENTINEL)}
    return rules, derived


def _cond(cond: Condition, neg: bool, d: _Derived) -> dict[str, Any]:
    if isinstance(cond, Always):
        return {"$nex": {_MARK: 1}} if neg else {"$ex": {_MARK: 1}}
    if isinstance(cond, Not):
        return _cond(cond.item, not neg, d)
    if isinstance(cond, (All, AnyOf)):
        parts = [_cond(c, neg, d) for c in cond.items]
        conj = isinstance(cond, All) != neg
        return parts[0] if len(parts) == 1 else {"$and" if conj else "$or": parts}
    assert isinstance(cond, Cmp)
    return _negated(cond, d) if neg else _positive(cond, d)


def _any(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$or": parts}


def _every(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _positive(c: Cmp, d: _Derived) -> dict[str, Any]:
    f, v, op = c.field, c.value, c.op
    if op == "eq":
        return {f: v}
    if op == "ne":
        return {"$neq": {f: v}}
    if op in _DURABLE_OP:
        return {_DURABLE_OP[op]: {f: v}}
    if op == "in":
        return _any([{f: x} for x in v])
    if op == "not_in":
        return _every([{"$neq": {f: x}} for x in v])
    if op == "between":
        return {"$and": [{"$gte": {f: v[0]}}, {"$lte": {f: v[1]}}]}
    if op == "contains":
        return {"$iany": {f: {"$i": v}}}
    if op == "contains_any":
        return {"$iany": {f: _any([{"$i": x} for x in v])}}
    if op == "matches":
        return {_regex(c, d): True}
    if op == "exists":
        return {"$ex": {f: 1}}
    if op == "missing":
        return {"$nex": {f: 1}}
    raise ValueError(f"unknown operator {op!r}")


def _negated(c: Cmp, d: _Derived) -> dict[str, Any]:
    f, v, op = c.field, c.value, c.op
    absent = {"$nex": {f: 1}}
    if op == "exists":
        return absent
    if op == "missing":
        return {"$ex": {f: 1}}
    if op == "not_in":
        return {"$or": [absent, *[{f: x} for x in v]]}
    if op == "matches":
        key = _regex(c, d)
        return {"$or": [{"$nex": {key: 1}}, {key: False}]}
    if op == "eq":
        alt = {"$neq": {f: v}}
    elif op == "ne":
        alt = {f: v}
    elif op in _COMPLEMENT:
        alt = {_COMPLEMENT[op]: {f: v}}
    elif op == "in":
        alt = _every([{"$neq": {f: x}} for x in v])
    elif op == "between":
        alt = {"$or": [{"$lt": {f: v[0]}}, {"$gt": {f: v[1]}}]}
    elif op in ("contains", "contains_any"):
        items = [v] if op == "contains" else list(v)
        key = f"_empty_{len(d.empties)}"
        d.empties[key] = f
        return {"$or": [absent, {key: True}, {"$iall": {f: _every([{"$neq": {"$i": x}} for x in items])}}]}
    else:
        raise ValueError(f"unknown operator {op!r}")
    return {"$or": [absent, alt]}


def _regex(c: Cmp, d: _Derived) -> str:
    key = f"_re_{len(d.regexes)}"
    d.regexes[key] = (c.field, regex.fullmatch(c.value))
    return key


def alternatives(expr: Any) -> int:
    """How many alternative paths durable builds for a durable condition: ``$and`` multiplies, ``$or`` adds
    (inside list quantifiers too); an upper bound on the fan-out of any node of its network."""
    if isinstance(expr, list):
        return sum(alternatives(e) for e in expr)
    if not isinstance(expr, dict):
        return 1
    total = 1
    for key, value in expr.items():
        if key == "$or":
            total *= sum(alternatives(e) for e in value)
        elif key == "$and":
            for e in value:
                total *= alternatives(e)
        elif isinstance(value, dict):
            total *= alternatives(value)
    return total


def _check_size(definition: Mapping[str, Any], ruleset: Ruleset) -> None:
    count = sum(alternatives(r["all"]) for rid, r in definition.items() if rid != _SENTINEL)
    if count > MAX_ALTERNATIVES:
        raise EvaluationError(
            f"durable-rules cannot run {ruleset.key}: its conditions expand to {count:,} alternatives, over "
            f"durable's limit of {MAX_ALTERNATIVES} (each 'any'/'in' value is one, 'all' multiplies them; "
            "larger rulesets hang durable); split the ruleset or use the compiled evaluator", ruleset=ruleset.name)


def _non_finite(facts: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key, value in facts.items():
        items = value if isinstance(value, (list, tuple)) else (value,)
        for v in items:
            if isinstance(v, float) and not math.isfinite(v):
                return key, v
    return None


def _positional(x: float) -> str:
    """A float as JSON without exponent notation (durable's parser rejects ``1e-05`` and ``1E+2``)."""
    text = repr(x)
    if "e" not in text and "E" not in text:
        return text
    return format(Decimal(text), "f")


def dumps(message: Mapping[str, Any]) -> str:
    """JSON for durable: like ``json.dumps``, with every float written positionally."""
    floats: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, float):
            floats.append(_positional(value))
            return f"\x00hf{len(floats) - 1}\x00"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(message), ensure_ascii=False)
    if not floats:
        return text
    return re.sub(r'"\\u0000hf(\d+)\\u0000"', lambda m: floats[int(m.group(1))], text)


def _check_literals(cond: Any, ruleset: Ruleset) -> None:
    values = cond.value if isinstance(cond, Cmp) and isinstance(cond.value, tuple) else (getattr(cond, "value", None),)
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise EvaluationError(f"durable-rules cannot read the non-finite number {v!r} in {ruleset.key} (it "
                                  "takes finite numbers only); use the compiled evaluator", ruleset=ruleset.name)
        if isinstance(v, float) and ("e" in repr(v) or "E" in repr(v)):
            raise EvaluationError(f"durable-rules cannot read the number {v!r} in {ruleset.key}; write it without an "
                                  "exponent or use the compiled evaluator", ruleset=ruleset.name)
    for child in getattr(cond, "items", ()) or ((cond.item,) if isinstance(cond, Not) else ()):
        _check_literals(child, ruleset)


def _nest(facts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in facts.items():
        if value is None:
            continue
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out


class _Host(Host):
    """A durable host that never loads rulesets by name (they are registered explicitly)."""

    def load_ruleset(self, ruleset_name: str) -> Any:
        raise EvaluationError(f"durable ruleset {ruleset_name!r} was never registered", ruleset=ruleset_name)


_HOST: _Host | None = None
_HOST_LOCK = threading.RLock()
_DERIVED: dict[str, _Derived] = {}  # versioned ruleset name -> its derived facts
_FIRED: dict[str, list[str]] = {}  # session id -> rule ids recorded by the actions


def _action(rule_id: str) -> Callable[[Any], None]:
    def record(c: Any) -> None:
        sink = _FIRED.get(c.m["_e"])
        if sink is not None and rule_id != _SENTINEL:
            sink.append(rule_id)

    return record


def _host() -> _Host:
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = _Host()
        return _HOST


class DurableEvaluator:
    """Evaluates through durable-rules (one process-wide host, one fresh session per evaluation)."""

    name = "durable"

    def load(self, ruleset: Ruleset) -> str:
        """Register ``ruleset`` with durable once, under its versioned name; returns that name."""
        name = ruleset.key
        with _HOST_LOCK:
            if name not in _DERIVED:
                for rule in ruleset.rules:
                    _check_literals(rule.when, ruleset)
                definition, derived = to_durable(ruleset, _action)
                _check_size(definition, ruleset)
                _host().set_rulesets({name: definition})
                _DERIVED[name] = derived
        return name

    def definition(self, ruleset: Ruleset) -> dict[str, Any]:
        """The durable JSON this evaluator registers for ``ruleset`` (without the ``run`` callables)."""
        rules, _ = to_durable(ruleset, lambda rid: lambda c: None)
        return {ruleset.key: {k: {kk: vv for kk, vv in r.items() if kk != "run"} for k, r in rules.items()}}

    def fired(self, ruleset: Ruleset, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Fired rule ids in priority order; only the first under hit policy ``first``."""
        name = self.load(ruleset)
        bad = _non_finite(facts)
        if bad is not None:
            raise EvaluationError(f"durable-rules cannot read the non-finite number {bad[1]!r} in the fact {bad[0]} "
                                  "(it takes finite numbers only); use the compiled evaluator", ruleset=ruleset.name)
        host = _host()
        sid = uuid.uuid4().hex
        message = _nest(facts)
        message.update({"sid": sid, "_e": sid, _MARK: "e"})
        _DERIVED[name].add(facts, message)
        sink: list[str] = []
        with _HOST_LOCK:
            _FIRED[sid] = sink
            try:
                rules = host.get_ruleset(name)
                send = durable_rules_engine.assert_event if ruleset.hit_policy == "first" else durable_rules_engine.assert_fact
                state = host._handle_function(
                    rules, lambda m: rules._handle_result(send(rules._handle, dumps(m)), m), message, None)
                if isinstance(state, dict) and "exception" in state:
                    raise EvaluationError(f"rule action failed in {name}: {state['exception']}", ruleset=ruleset.name)
            except MessageNotHandledException:  # cannot happen with the sentinel; kept for safety
                pass
            finally:
                _FIRED.pop(sid, None)
                host.delete_state(name, sid)
        order = {r.id: i for i, r in enumerate(ruleset.rules)}
        fired = sorted(set(sink), key=order.__getitem__)
        return tuple(fired[:1]) if ruleset.hit_policy == "first" else tuple(fired)
