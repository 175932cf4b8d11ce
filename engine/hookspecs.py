"""Every hook Herald calls. A hook's docstring is its documentation (README links here).

Hooks are grouped by phase. Implementations may accept any subset of a hook's arguments; the engine
always calls hooks with keyword arguments. Plugins mark implementations with ``engine.hookimpl``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

PROJECT = "herald"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from engine.contracts import (
        Channel,
        ContactField,
        DecisionDraft,
        EvaluatorSpec,
        FieldSpec,
        IncentiveType,
        Optimizer,
        RuleKind,
    )
    from engine.events import EngineEvent
    from engine.model import Customer, Issue, Message


# --- Registration: called once, when the registry is built -------------------------------------------


@hookspec
def register_channels(register: Callable[[Channel], None], settings: Mapping[str, Any]) -> None:
    """Register channels by calling ``register(channel)`` once per channel object.

    :param register: records the channel under its ``name`` with this plugin as owner; a name another
        plugin already registered raises ``PluginConflict`` naming both plugins.
    :param settings: this plugin's settings block (the ``plugins:`` block of the ``HERALD_SETTINGS`` file, or what the caller passes).
    """


@hookspec
def register_incentives(register: Callable[[IncentiveType], None], settings: Mapping[str, Any]) -> None:
    """Register incentive types (``coupon``, ``points`` …) by calling ``register(incentive_type)``.

    An incentive type holds no mutable state: what it reserves lives in the ledger store each call's
    context hands it (``ctx.ledger``; see :mod:`engine.stores`).

    :param register: records the incentive type under its ``kind``; duplicates raise ``PluginConflict``.
    :param settings: this plugin's settings block.
    """


@hookspec
def register_optimizers(register: Callable[[Optimizer], None], settings: Mapping[str, Any]) -> None:
    """Register pipeline steps by calling ``register(optimizer)``; they run in ascending ``order``.

    :param register: records the optimizer under its ``name``; duplicates raise ``PluginConflict``.
    :param settings: this plugin's settings block.
    """


@hookspec
def register_rule_kinds(register: Callable[[RuleKind], None], settings: Mapping[str, Any]) -> None:
    """Register the kinds of ruleset an optimizer of this plugin consumes, by calling ``register(RuleKind(...))``.

    A kind gives the ``kind:`` of rule files (and the keys of a message file's ``rules:`` block), the model of
    a rule's ``then``, the ruleset's outcome, its place in the pipeline and the hit policies it allows. The
    rule-file loader, its JSON Schema, message validation and the bulk plan read kinds from the registry
    only: a rule file of a kind no plugin registered is refused, naming the registered ones.

    :param register: records the kind under its ``name``; duplicates raise ``PluginConflict``.
    :param settings: this plugin's settings block.
    """


@hookspec
def register_contact_fields(register: Callable[[ContactField], None], settings: Mapping[str, Any]) -> None:
    """Register the customer attributes this plugin's channels reach customers through (``phone``, ``email``,
    ``kakao_id`` …), by calling ``register(ContactField(...))``, with their normalisers.

    The model, the field catalogue (``customer.<name>``) and both audience readers read contact fields from
    the registry only: a reader normalises a registered field's values and marks a malformed one in
    ``customer.handle_error.<name>``; a column no loaded plugin registers is an ordinary attribute.

    :param register: records the field with this plugin as an owner. Several plugins may register one field
        (SMS and call tasks both read ``phone``) when their normalisers are the same functions; a field whose
        normalisers or regions differ from another plugin's raises ``PluginConflict`` naming both plugins.
    :param settings: this plugin's settings block (e.g. the ``default_region`` phone numbers are read in).
    """


@hookspec
def register_fields(register: Callable[[FieldSpec], None], settings: Mapping[str, Any]) -> None:
    """Declare fields that rules may test (for example the ones ``enrich_facts`` adds).

    :param register: records a ``FieldSpec`` (path, type, description); a path declared twice raises
        ``PluginConflict``.
    :param settings: this plugin's settings block.
    """


@hookspec
def register_evaluators(register: Callable[[EvaluatorSpec], None], settings: Mapping[str, Any]) -> None:
    """Register rule evaluators (what ``--evaluator`` names) by calling ``register(EvaluatorSpec(name, create))``.

    The built-in ``compiled``, ``reference``, ``durable`` and ``columnar`` are registered through this hook
    too, by the engine's own plugin ``engine.evaluators.builtin`` (always loaded unless blocked).

    :param register: records the evaluator under its ``name``; duplicates raise ``PluginConflict``.
        ``create()`` makes a fresh evaluator each time one is asked for.
    :param settings: this plugin's settings block.
    """


# --- Evaluation: called per recipient; must be cheap, synchronous and free of I/O --------------------


@hookspec
def enrich_facts(customer: Customer, message: Message) -> Mapping[str, Any] | None:
    """Add facts for one recipient before any rule runs.

    :return: a mapping of field path → value merged into the facts, or ``None``. A key that is already
        a fact (or that another plugin returned) is an error: facts are never silently overwritten.
    """


@hookspec
def check_delivery(customer: Customer, channel: str, message: Message, draft: DecisionDraft) -> list[Issue] | None:
    """Check one candidate channel for one recipient after reachability.

    :return: issues; any issue with severity ``error`` drops that channel for that recipient, and the
        issue's message is recorded in the trace.
    """


# --- Observation --------------------------------------------------------------------------------------


@hookspec
def engine_event(event: EngineEvent) -> None:
    """Observe what the engine does. ``event.kind`` is one of ``decision_made``, ``rule_fired`` (one per fired
    rule), ``channel_dropped``, ``incentive_reserved`` (real reservations only; a preview takes nothing),
    ``send_attempted`` and ``send_finished`` (around every ``engine.delivery.attempt``).

    Observers must not change anything; an observer that raises is logged and ignored, never breaks
    an evaluation.
    """
