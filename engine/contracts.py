"""What plugins register, as Protocols, and the objects the pipeline hands to optimizers.

A channel, incentive type or optimizer is any object with these members; plugins register them through
the ``register_*`` hooks (see :mod:`engine.hookspecs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from engine.model import EMPTY, Creative, Customer, Issue, Message, Reachability, TraceStep

if TYPE_CHECKING:
    from engine.registry import Registry


@runtime_checkable
class Channel(Protocol):
    """A way to reach a customer: direct (SMS, email …), ad (audience export) or task (call centre).

    ``cost`` is the estimated cost of one send, in the org's currency unit. ``tags`` are the Liquid
    variables the channel itself provides to templates (``optout`` for SMS, ``unsubscribe_url`` …);
    ``required_tags`` must be output unconditionally by every creative of the channel (a plain ``{{ tag }}`` at
    the top level of the template: not in a condition or loop, not captured, assigned or filtered).
    """

    name: str
    kind: Literal["direct", "ad", "task"]
    cost: float
    creative_schema: Mapping[str, Any]
    tags: Mapping[str, Any]
    required_tags: tuple[str, ...]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Check a creative for everything the provider would reject; paths are inside ``content``."""
        ...

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """Whether and how this customer can be reached on this channel."""
        ...

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """The provider's request payload for one recipient, templates rendered with ``context``."""
        ...

    # Optional: ``required_tag_fields: tuple[str, ...]`` names the content fields that must each output every
    # required tag unconditionally (by default one field must). ``compliance(payload, context, *, preview)
    # -> list[Issue]`` checks a rendered payload (paths inside the payload); any issue drops the channel for
    # that recipient with reason ``compliance``. Without it, the pipeline checks that the value of every
    # required tag in ``tags`` appears in the payload (``engine.missing_values``).


@runtime_checkable
class IncentiveType(Protocol):
    """A kind of incentive (coupon series, points strategy). ``tags`` are the template variables it fills."""

    kind: str
    spec_schema: Mapping[str, Any]
    tags: tuple[str, ...]

    def validate(self, spec: Mapping[str, Any], message: Message) -> list[Issue]:
        """Check the incentive settings of a message."""
        ...

    def reserve(self, spec: Mapping[str, Any], customer: Customer, ctx: EvaluationContext,
                send_at: datetime) -> Mapping[str, Any]:
        """The incentive for one recipient sent at ``send_at`` (its planned send instant, in the recipient's
        zone: expiries count from it); the grant is the template context under the kind's name. A preview
        takes nothing but refuses (raises ``EngineError``) whom a real run would refuse, in the same order."""
        ...

    def release(self, spec: Mapping[str, Any], grant: Mapping[str, Any]) -> None:
        """Give back what ``reserve`` took (a failed send)."""
        ...

    # Optional: ``check_fields(spec, catalogue) -> list[Issue]`` checks field references against the field
    # catalogue at load; ``prepare(spec, ctx, audience) -> list[Issue]`` checks, before a run, that the
    # incentive can serve ``audience`` recipients (``None``: unknown); ``shared(spec, message) -> (key,
    # settings)`` names a resource several messages may share and the settings they must agree on.


@runtime_checkable
class Optimizer(Protocol):
    """One step of the per-recipient pipeline, run in ascending ``order`` for every included draft."""

    name: str
    order: int

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Refine ``draft`` (exclude, pick a variant, order channels, move send_at) and trace why."""
        ...

    # Optional: ``validate(message) -> list[Issue]`` checks ``message.optimizers[name]`` when the message
    # loads (paths relative to that block); ``active(message) -> bool`` says whether the step does anything.


@runtime_checkable
class Evaluator(Protocol):
    """Evaluates a compiled ruleset (the neutral IR) against flat facts; returns fired rule ids in order."""

    name: str

    def fired(self, ruleset: Any, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Rule ids that fire: at most one under hit policy ``first``, all in priority order under ``collect``."""
        ...


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field rules may test: its path (``customer.tier``), type and a description."""

    path: str
    type: Literal["string", "integer", "number", "boolean", "date", "datetime", "list"]
    description: str = ""
    #: the allowed values of a closed field (empty: any value of the type)
    values: tuple[Any, ...] = ()


@dataclass(slots=True)
class DecisionDraft:
    """The mutable decision one recipient builds up while the optimizers run."""

    customer: Customer
    facts: dict[str, Any]
    send_at: datetime | None
    explain: bool = False
    included: bool = True
    excluded_reason: str | None = None
    variant: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    incentive: Mapping[str, Any] | None = None
    rendered: Mapping[str, Any] | None = None
    fired: dict[str, tuple[str, ...]] = field(default_factory=dict)
    trace: list[TraceStep] = field(default_factory=list)

    def note(self, step: str, event: str, **detail: Any) -> None:
        """Add a trace line (kept only when the caller asked for an explanation)."""
        if self.explain:
            self.trace.append(TraceStep(step, event, detail or EMPTY))

    def exclude(self, reason: str, step: str, **detail: Any) -> None:
        """Exclude the recipient; later steps are skipped. The first reason wins."""
        if self.included:
            self.included = False
            self.excluded_reason = reason
            self.channels = []
        self.note(step, "excluded", reason=reason, **detail)

    def drop_channel(self, channel: str, step: str, why: str, **detail: Any) -> None:
        """Remove a candidate channel and trace why."""
        if channel in self.channels:
            self.channels.remove(channel)
        self.note(step, "channel_dropped", channel=channel, why=why, **detail)


@dataclass(frozen=True)
class FiredRule:
    """A rule that fired: its id and its ``then`` data."""

    id: str
    then: Mapping[str, Any]


@dataclass
class EvaluationContext:
    """Everything an optimizer may consult for one evaluation run (shared by all recipients).

    ``run_rules(kind, draft)`` evaluates the message's ruleset of that kind on the draft's facts with the
    selected evaluator, records the fired rules and the ruleset version on the draft, and returns them.
    ``history`` is the send history (customer id → list of ``{"channel", "sent_at"}``) for frequency caps.
    ``state`` is scratch space optimizers may use to cache per-run work, keyed by their name.
    """

    message: Message
    registry: Registry
    at: datetime
    run_rules: Callable[[str, DecisionDraft], Sequence[FiredRule]]
    preview: bool = True
    history: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=lambda: EMPTY)
    state: dict[str, Any] = field(default_factory=dict)


# --- Optional columnar extensions (bulk evaluation over a polars frame) ------------------------------------
#
# A channel or optimizer MAY also implement the members below. The bulk path (engine.columnar) is used
# only when every optimizer in the pipeline that is active for the message implements ``columnar`` and
# every candidate channel implements ``reachability_expr``; otherwise evaluation falls back to the
# per-recipient pipeline, which is always correct.
#
# Frame conventions (one row per recipient):
#   * one column per fact, named by its path: ``customer.id``, ``customer.tier``, ``time.local_hour`` …
#     (missing values are null; list fields are List(String); dates are ISO strings, as in per-recipient facts)
#   * ``_included`` Boolean, ``_reason`` String (null while included), ``_variant`` String,
#     ``_channels`` List(String) (candidate then surviving channels, in order), ``_send_at`` Datetime("us", "UTC")
#   * a step changes only rows where ``_included`` is true, so the first exclusion reason wins.
#   * ``_channel_code`` UInt32 (optional, set by channel priority): an index into ``ctx.state["channel_table"]``
#     (every candidate list × surviving-channel mask); ``_channels`` is the table entry. While no later step
#     changes ``_channels`` (the plan compares ``_channels``' optimized plan before and after each step), the
#     plan's finish reads ``channel``/``fallbacks`` from the table instead of slicing lists.
#   * fired rules: ``_fired:<kind>`` (see engine.columnar.context); first-hit outcomes are one gather from
#     a static table indexed by ``fired + 1``.
#
# A channel MAY also implement ``reachable_expr(message)``: a Boolean expression (never null) equal to
# ``reachability_expr(message)`` being a reachable status, row by row; the bulk plan prefers it (no status
# strings are built). ``engine.reachability.ContactReach.reachable_expr`` gives it for contact channels.


@runtime_checkable
class ColumnarChannel(Protocol):
    """A channel that can compute reachability for a whole frame at once."""

    def reachability_expr(self, message: Message) -> Any:
        """A polars expression giving the ``Reachability`` value (as a string) of every row; it must equal
        ``reachability(customer, message)`` row by row."""
        ...


@runtime_checkable
class ColumnarOptimizer(Protocol):
    """An optimizer that can also run over a whole frame (see the frame conventions above)."""

    def columnar(self, frame: Any, ctx: Any) -> Any:
        """Return ``frame`` (a polars LazyFrame) with this step applied to the included rows.

        ``ctx`` is an ``engine.columnar.ColumnarContext``: the message, registry, instant, and
        ``ctx.fired(kind)``/``ctx.outcome(kind)`` giving polars expressions for the message's rulesets.
        The result must equal running ``apply`` on every row.
        """
        ...
