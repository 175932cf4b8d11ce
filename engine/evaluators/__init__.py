"""Evaluators of the rule IR, by name: ``compiled`` (default), ``reference`` (the oracle), ``durable``."""

from __future__ import annotations

from engine.contracts import Evaluator
from engine.errors import UnknownReference

EVALUATORS = ("compiled", "reference", "durable")


def get_evaluator(name: str = "compiled") -> Evaluator:
    """A new evaluator by name; ``durable`` is imported only when asked for."""
    if name == "compiled":
        from engine.evaluators.compiled import CompiledEvaluator

        return CompiledEvaluator()
    if name == "reference":
        from engine.evaluators.reference import ReferenceEvaluator

        return ReferenceEvaluator()
    if name == "durable":
        from engine.evaluators.durable import DurableEvaluator

        return DurableEvaluator()
    raise UnknownReference(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
