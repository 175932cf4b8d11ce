"""What fired rules mean for each ruleset kind, and the runner for the ``tests:`` inside rule files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.contracts import Evaluator


def outcome(kind: str, thens: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The result of a ruleset from the ``then`` data of its fired rules (in firing order).

    personalization → ``variant`` (first fired) and ``vars`` (merged, earlier wins);
    channel_priority → ``channels`` (in order, duplicates removed); eligibility → ``exclude`` (first
    reason, or ``None``); audience_filter → ``include`` (first fired, ``False`` when none fired).
    """
    if kind == "personalization":
        merged: dict[str, Any] = {}
        for t in reversed(thens):
            merged.update(t.get("vars") or {})
        return {"variant": thens[0]["variant"] if thens else None, "vars": merged}
    if kind == "channel_priority":
        return {"channels": list(dict.fromkeys(c for t in thens for c in t["channels"])) if thens else None}
    if kind == "eligibility":
        return {"exclude": thens[0]["exclude"] if thens else None}
    if kind == "audience_filter":
        return {"include": bool(thens[0].get("include", True)) if thens else False}
    raise ValueError(f"unknown ruleset kind {kind!r}")


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


def run_rule_tests(ruleset: Any, evaluator: Evaluator) -> list[str]:
    """Run the ruleset's ``tests:`` examples; returns one failure message per failing example."""
    from engine.fields import coerce

    failures = []
    for n, test in enumerate(ruleset.tests):
        name = test.get("name") or f"tests[{n}]"
        facts = {k: _norm(coerce, v) for k, v in flatten(test["given"]).items()}
        fired = list(evaluator.fired(ruleset, facts))
        expect = dict(test["expect"])
        got: dict[str, Any] = {"fired": fired}
        got.update(outcome(ruleset.kind, [ruleset.rule(r).then for r in fired]))
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
