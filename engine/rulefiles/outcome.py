"""The runner for the ``tests:`` inside rule files (what fired rules mean comes from their registered kind)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.contracts import Evaluator, RuleKind


def flatten(given: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{customer: {tier: gold, subscription: {sms: x}}}`` → ``{customer.tier: gold, customer.subscription.sms: x}``."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def run_rule_tests(ruleset: Any, evaluator: Evaluator, kinds: Mapping[str, RuleKind]) -> list[str]:
    """Run the ruleset's ``tests:`` examples; returns one failure message per failing example.

    :param kinds: the registered rule kinds (``registry.kinds``); the ruleset's kind gives the outcome
        keys an example may expect besides ``fired``."""
    from engine.fields import coerce
    from engine.registry import unknown_kind

    if ruleset.kind not in kinds:
        return [unknown_kind(ruleset.kind, kinds)]
    kind = kinds[ruleset.kind]
    failures = []
    for n, test in enumerate(ruleset.tests):
        name = test.get("name") or f"tests[{n}]"
        facts = {k: _norm(coerce, v) for k, v in flatten(test["given"]).items()}
        fired = list(evaluator.fired(ruleset, facts))
        expect = dict(test["expect"])
        got: dict[str, Any] = {"fired": fired}
        got.update(kind.outcome([ruleset.rule(r).then for r in fired]))
        for key, want in expect.items():
            if key not in got:
                failures.append(f"{name}: unknown expectation {key!r} (use fired or {', '.join(k for k in got if k != 'fired')})")
            elif got[key] != want:
                failures.append(f"{name}: expected {key} {want!r}, got {got[key]!r} (fired: {fired})")
    return failures


def _norm(coerce: Any, value: Any) -> Any:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return coerce("datetime", value)
    if isinstance(value, dt.date):
        return coerce("date", value)
    return value
