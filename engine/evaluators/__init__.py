"""Evaluators of the rule IR, by name. The built-in ones — ``compiled`` (default), ``reference`` (the
oracle), ``durable``, ``columnar`` (polars; built for whole audiences, usable on one fact mapping too) — are
registered through the ``register_evaluators`` hook by :mod:`engine.evaluators.builtin`, like any plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.contracts import Evaluator
from engine.evaluators.builtin import BUILTIN

if TYPE_CHECKING:
    from engine.registry import Registry

#: the names of the built-in evaluators
EVALUATORS = tuple(spec.name for spec in BUILTIN)


def get_evaluator(name: str = "compiled", registry: Registry | None = None) -> Evaluator:
    """A new evaluator by name, from ``registry`` (default: a registry of the engine's own plugins, i.e. the
    built-in evaluators). ``UnknownReference`` lists the registered names when there is none by that name."""
    if registry is None:
        from engine.plugin_manager import ENGINE_PLUGINS, make_plugin_manager
        from engine.registry import Registry

        registry = Registry.build(make_plugin_manager(ENGINE_PLUGINS, entry_points=False, env={}))
    return registry.evaluator(name)
