"""Evaluators of the rule IR, by name: ``compiled`` (default), ``reference`` (the oracle), ``durable``,
``columnar`` (polars; built for whole audiences, usable on one fact mapping too)."""

from __future__ import annotations

from engine.contracts import Evaluator
from engine.errors import UnknownReference

EVALUATORS = ("compiled", "reference", "durable", "columnar")


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
    if name == "columnar":
        from engine.evaluators.columnar import ColumnarEvaluator

        return ColumnarEvaluator()
    raise UnknownReference(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
