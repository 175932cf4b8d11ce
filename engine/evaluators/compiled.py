"""The compiled evaluator: each ruleset version becomes one plain Python function, built once.

Safety: field names are checked against a strict pattern and passed as constants, operators come from a
whitelist of code templates, and literals are bound as constants in the function's namespace, never
spliced into the source text.

A ruleset the code generator cannot compile is an error (``ValueError`` naming the rule), never a silent
switch to another evaluator. Only a fact of an unexpected type at evaluation time (a ``TypeError`` from a
comparison, e.g. the text ``"many"`` against ``points > 5``) is answered by the reference evaluator for that
one evaluation, so results always equal the oracle's; :attr:`CompiledEvaluator.fallbacks` counts those.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from engine.evaluators.reference import ReferenceEvaluator
from engine.rulefiles import regex
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Condition, Not, Ruleset

_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_*]+)*$")

# Each template gets K (the key constant) and C (the literal constant); ``_v`` holds the fact's value and is
# read only inside its own template, so one local name serves every comparison.
_TEMPLATES: dict[str, str] = {
    "eq": "(g({K}) == {C})",
    "ne": "((_v := g({K})) is not None and _v != {C})",
    "lt": "((_v := g({K})) is not None and _v < {C})",
    "lte": "((_v := g({K})) is not None and _v <= {C})",
    "gt": "((_v := g({K})) is not None and _v > {C})",
    "gte": "((_v := g({K})) is not None and _v >= {C})",
    "in": "(g({K}) in {C})",
    "not_in": "((_v := g({K})) is not None and _v not in {C})",
    "between": "((_v := g({K})) is not None and {C}[0] <= _v <= {C}[1])",
    "contains": "(isinstance(_v := g({K}), _seq) and {C} in _v)",
    "contains_any": "(isinstance(_v := g({K}), _seq) and not {C}.isdisjoint(_v))",
    "matches": "(isinstance(_v := g({K}), str) and {C}(_v))",
    "exists": "(g({K}) is not None)",
    "missing": "(g({K}) is None)",
}


class _Codegen:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def cond(self, cond: Condition) -> str:
        if isinstance(cond, Always):
            return "True"
        if isinstance(cond, All):
            return "(" + " and ".join(self.cond(c) for c in cond.items) + ")"
        if isinstance(cond, AnyOf):
            return "(" + " or ".join(self.cond(c) for c in cond.items) + ")"
        if isinstance(cond, Not):
            return f"(not {self.cond(cond.item)})"
        if not isinstance(cond, Cmp) or cond.op not in _TEMPLATES:
            raise ValueError(f"cannot compile condition {cond!r}")
        if not _FIELD.match(cond.field):
            raise ValueError(f"invalid field name {cond.field!r}")
        lit = cond.value
        if cond.op in ("in", "not_in", "contains_any"):
            lit = frozenset(lit)  # validated literals are scalars
        elif cond.op == "matches":
            lit = regex.fullmatch(lit)
        return _TEMPLATES[cond.op].format(K=self.const(cond.field), C=self.const(lit))


def compile_ruleset(ruleset: Ruleset) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    """Turn a ruleset into ``f(facts) -> fired rule ids``; ``ValueError`` (naming the rule) when a condition
    cannot be compiled (an unknown operator, a bad field name, a literal of the wrong shape)."""
    gen = _Codegen()
    first = ruleset.hit_policy == "first"
    lines = ["def _evaluate(facts):", "    g = facts.get"]
    if not first:
        lines.append("    out = []")
    for rule in ruleset.rules:
        rid = gen.const((rule.id,)) if first else gen.const(rule.id)
        try:
            test = gen.cond(rule.when)
        except (TypeError, re.error) as exc:  # e.g. an unhashable item in an ``in`` list
            raise ValueError(f"cannot compile rule {rule.id!r} of ruleset {ruleset.key}: {exc}") from None
        lines.append(f"    if {test}:")
        lines.append(f"        return {rid}" if first else f"        out.append({rid})")
    lines.append("    return ()" if first else "    return tuple(out)")
    namespace: dict[str, Any] = {"_seq": (list, tuple), **gen.consts}
    exec(compile("\n".join(lines), f"<ruleset {ruleset.key}>", "exec"), namespace)
    return namespace["_evaluate"]


#: id(ruleset) -> (a weak reference to that ruleset, its compiled function): see :func:`shared_function`
_SHARED: dict[int, tuple[weakref.ref[Ruleset], Callable[[Mapping[str, Any]], tuple[str, ...]]]] = {}


def shared_function(ruleset: Ruleset) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    """The compiled function of this ruleset *object*, compiled once per process while the object lives.

    Every ``CompiledEvaluator`` shares it, so a run that creates a fresh evaluator (one ``Herald.evaluate``
    per request) does not compile again. Keyed by identity, not by ``name@version``: hand-made rulesets may
    reuse a name and version for different rules."""
    key = id(ruleset)
    entry = _SHARED.get(key)
    if entry is not None and entry[0]() is ruleset:
        return entry[1]
    fn = compile_ruleset(ruleset)

    def forget(ref: weakref.ref[Ruleset], key: int = key) -> None:
        if (current := _SHARED.get(key)) is not None and current[0] is ref:
            del _SHARED[key]

    _SHARED[key] = (weakref.ref(ruleset, forget), fn)
    return fn


class CompiledEvaluator:
    """Evaluates with the function compiled for each ruleset version (cached by ``name@version``; the
    compiling itself is shared by every instance, see :func:`shared_function`)."""

    name = "compiled"

    def __init__(self) -> None:
        self._cache: dict[str, Callable[[Mapping[str, Any]], tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._oracle = ReferenceEvaluator()
        #: evaluations answered by the reference evaluator because a fact had a type the compiled code could
        #: not compare (``TypeError``); zero for facts of the catalogue's types
        self.fallbacks = 0

    def function(self, ruleset: Ruleset) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
        """The compiled function for ``ruleset`` (compiled on first use)."""
        key = ruleset.key
        fn = self._cache.get(key)
        if fn is None:
            with self._lock:
                fn = self._cache.get(key) or shared_function(ruleset)
                self._cache[key] = fn
        return fn

    def fired(self, ruleset: Ruleset, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Fired rule ids in priority order; only the first under hit policy ``first``.

        Compiling is outside the fallback: a ruleset that cannot compile raises. A fact of an unexpected type
        is evaluated by the reference evaluator (same semantics: that comparison is false) and counted in
        :attr:`fallbacks`."""
        evaluate = self.function(ruleset)
        try:
            return evaluate(facts)
        except TypeError:
            self.fallbacks += 1
            return self._oracle.fired(ruleset, facts)

    def bind(self, ruleset: Ruleset) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
        """``fired`` with ``ruleset`` fixed: ``bind(rs)(facts) == fired(rs, facts)``, without the per-call
        look-up of the compiled function (a pipeline binds each ruleset of its message once). Compiles on
        the first call, as ``fired`` does, so that a compile error surfaces where it always did."""
        fn: Callable[[Mapping[str, Any]], tuple[str, ...]] | None = None
        oracle = self._oracle

        def fired(facts: Mapping[str, Any]) -> tuple[str, ...]:
            nonlocal fn
            try:
                if fn is None:
                    fn = self.function(ruleset)
                return fn(facts)
            except TypeError:
                return oracle.fired(ruleset, facts)

        return fired
