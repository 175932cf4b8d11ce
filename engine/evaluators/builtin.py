"""The engine's own plugin: registers the built-in evaluators through ``register_evaluators``, as any plugin
would. ``durable`` and ``columnar`` import their libraries only when one is created."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.contracts import Evaluator, EvaluatorSpec
from engine.hookspecs import hookimpl


def _compiled() -> Evaluator:
    from engine.evaluators.compiled import CompiledEvaluator

    return CompiledEvaluator()


def _reference() -> Evaluator:
    from engine.evaluators.reference import ReferenceEvaluator

    return ReferenceEvaluator()


def _durable() -> Evaluator:
    from engine.evaluators.durable import DurableEvaluator

    return DurableEvaluator()


def _columnar() -> Evaluator:
    from engine.evaluators.columnar import ColumnarEvaluator

    return ColumnarEvaluator()


#: the built-in evaluators, in the order ``--help`` lists them
BUILTIN: tuple[EvaluatorSpec, ...] = (
    EvaluatorSpec("compiled", _compiled, "each ruleset version compiled to one Python function (default); "
                  "in bulk mode the columnar plan gives the same answers", ("per_recipient", "bulk")),
    EvaluatorSpec("reference", _reference, "a small interpreter of the rule IR: the test oracle"),
    EvaluatorSpec("durable", _durable, "the durable-rules engine"),
    EvaluatorSpec("columnar", _columnar, "polars expressions over whole audiences (bulk mode only)", ("bulk",)),
)


@hookimpl
def register_evaluators(register: Callable[[EvaluatorSpec], None], settings: Any) -> None:
    """Register the built-in evaluators."""
    for spec in BUILTIN:
        register(spec)
