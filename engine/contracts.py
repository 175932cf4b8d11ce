"""What plugins register, as Protocols, and the objects the pipeline hands to optimizers.

A channel, incentive type or optimizer is any object with these members; plugins register them through
the ``register_*`` hooks (see :mod:`engine.hookspecs`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from engine.events import EngineEvent
from engine.model import EMPTY, Creative, Customer, Issue, Message, Reachability, TraceStep
from engine.stores import LedgerStore

if TYPE_CHECKING:
    import polars as pl

    from engine.columnar.context import ColumnarContext
    from engine.registry import Registry


# --- Sending: what Channel.send takes and returns ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send: ``accepted`` (with the provider's id), a ``transient`` error (retry, after
    ``retry_after`` seconds when the provider said so) or a ``permanent`` error (do not retry). Build it with
    :meth:`accepted`, :meth:`transient` or :meth:`permanent`.

    ``unreachable`` (permanent errors only) says the recipient's address itself is dead on this channel
    (invalid number, hard bounce, unregistered device token, unsubscribed): delivery marks the customer
    unreachable there. A permanent error of the sender's own making (bad credentials, rejected content) leaves it
    ``False``."""

    outcome: Literal["accepted", "transient", "permanent"]
    provider_id: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    unreachable: bool = False

    def __post_init__(self) -> None:
        if self.outcome == "accepted" and not self.provider_id:
            raise ValueError("an accepted send needs the provider's id")
        if self.outcome in ("transient", "permanent") and not self.reason:
            raise ValueError(f"a {self.outcome} error needs a reason")
        if self.outcome not in ("accepted", "transient", "permanent"):
            raise ValueError(f"unknown send outcome {self.outcome!r}")
        if self.retry_after is not None and (self.outcome != "transient" or self.retry_after < 0):
            raise ValueError("retry_after is a number of seconds ≥ 0, on a transient error only")
        if self.unreachable and self.outcome != "permanent":
            raise ValueError("only a permanent error marks the recipient unreachable")

    @classmethod
    def accepted(cls, provider_id: str) -> SendResult:
        """The provider took the message; ``provider_id`` identifies it in later delivery reports."""
        return cls("accepted", provider_id=str(provider_id))

    @classmethod
    def transient(cls, reason: str, retry_after: float | None = None) -> SendResult:
        """A failure worth retrying (rate limit, timeout, provider outage)."""
        return cls("transient", reason=reason, retry_after=retry_after)

    @classmethod
    def permanent(cls, reason: str, *, unreachable: bool = False) -> SendResult:
        """A failure retrying cannot fix (invalid number, rejected content, no transport); ``unreachable`` when
        the recipient's address is what failed."""
        return cls("permanent", reason=reason, unreachable=unreachable)

    @property
    def ok(self) -> bool:
        """Whether the provider accepted the send."""
        return self.outcome == "accepted"


@dataclass(frozen=True, slots=True)
class SendRequest:
    """What a transport delivers: the channel, the recipient's address (phone, e-mail, token, user id …),
    the provider request ``body`` (the rendered payload, or a request a channel built from it), the
    idempotency key and the channel's delivery settings (provider account, sender …)."""

    channel: str
    to: str
    body: Mapping[str, Any]
    idempotency_key: str
    settings: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@runtime_checkable
class Transport(Protocol):
    """Delivers provider requests (SMTP, SMPP, an HTTP API …). The engine ships none: it has no network."""

    async def deliver(self, request: SendRequest) -> SendResult:
        """Send one request; answer with the provider's outcome (never raise for a provider's refusal)."""
        ...


@dataclass(frozen=True, slots=True)
class SendContext:
    """One send of one message to one customer in one run, and how to reach the provider.

    ``settings`` are the channel's delivery settings for this send; ``transport`` delivers the request
    (``None``: none configured, and every built-in channel answers a permanent error).
    """

    message_id: str
    run_id: str
    customer_id: str
    settings: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    transport: Transport | None = None

    @property
    def idempotency_key(self) -> str:
        """A key derived from (message, run, customer) only: a retried send carries the same one, so a provider
        (or a transport) can drop the duplicate."""
        raw = json.dumps([self.message_id, self.run_id, self.customer_id], ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class IncentiveContext:
    """What ``IncentiveType.issue`` and ``release`` work with: the message, the ledger store the grant was
    reserved in, and the instant of the send (``issue`` counts expiries from it)."""

    message: Message
    ledger: LedgerStore
    at: datetime


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

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send a payload ``render`` returned, through ``ctx.transport``; a provider's refusal is a result, not
        an exception (``engine.transport_send`` does the usual part: no transport or no recipient → a
        permanent error)."""
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
        zone: expiries count from it); the grant is the template context under the kind's name. A real
        reservation is kept in ``ctx.ledger``, once per (message, customer): reserving again returns the same
        grant. A preview takes nothing but refuses (raises ``EngineError``) whom a real run would refuse, in
        the same order."""
        ...

    async def issue(self, spec: Mapping[str, Any], grant: Mapping[str, Any], ctx: IncentiveContext) -> Mapping[str, Any]:
        """Make a reserved grant final (the send succeeded): once per (message, customer); issuing again
        returns the first issue unchanged. ``KeyError`` when nothing is reserved for the grant."""
        ...

    def release(self, spec: Mapping[str, Any], grant: Mapping[str, Any], ctx: IncentiveContext) -> None:
        """Give back what ``reserve`` took (the send failed): the item becomes available again. Issued grants
        and previews are left alone."""
        ...

    # Optional: ``check_fields(spec, catalogue) -> list[Issue]`` checks field references against the field
    # catalogue at load; ``prepare(spec, ctx, audience) -> list[Issue]`` checks, before a run, that the
    # incentive can serve ``audience`` recipients (``None``: unknown); ``shared(spec, message) -> (key,
    # settings)`` names a resource several messages may share and the settings they must agree on.


@runtime_checkable
class Optimizer(Protocol):
    """One step of the per-recipient pipeline, run in ascending ``order`` for every included draft.

    An optimizer may also implement any of the optional protocols :class:`ActiveOptimizer` (``active``),
    :class:`ValidatingOptimizer` (``validate``) and :class:`ColumnarOptimizer` (``columnar``); the engine
    checks them with ``isinstance``, never by probing attributes.
    """

    name: str
    order: int

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Refine ``draft`` (exclude, pick a variant, order channels, move send_at) and trace why."""
        ...


@runtime_checkable
class ActiveOptimizer(Protocol):
    """An optimizer that says for which messages it does anything (the others always run)."""

    def active(self, message: Message) -> bool:
        """Whether the step does anything for ``message``; an inactive step is skipped on both paths."""
        ...


@runtime_checkable
class ValidatingOptimizer(Protocol):
    """An optimizer whose per-message settings (``message.optimizers[name]``) are checked at load."""

    def validate(self, message: Message) -> list[Issue]:
        """Problems with ``message.optimizers[name]`` (paths relative to that block)."""
        ...


def is_active(optimizer: Optimizer, message: Message) -> bool:
    """Whether ``optimizer`` takes part in evaluating ``message`` (see :class:`ActiveOptimizer`)."""
    # what ``isinstance(optimizer, ActiveOptimizer)`` checks (an ``active`` member that is not None), without
    # the runtime protocol check's cost (~25 µs, paid per optimizer whenever a run starts)
    active = getattr(optimizer, "active", None)
    return active is None or active(message)


@dataclass(frozen=True, slots=True)
class RuleKind:
    """A kind of ruleset (a rule file's ``kind:``), registered by the plugin whose optimizer consumes it.

    :param name: the kind, as rule files and the ``rules:`` block of message files spell it.
    :param then_model: the pydantic model of a rule's ``then`` (extra keys should be forbidden); the loader
        validates every ``then`` with it and stores its ``model_dump()``.
    :param outcome: the ruleset's result from the ``then`` data of its fired rules, in firing order (an empty
        list when none fired), as a dict; its keys are what a rule file's ``tests: expect:`` may check.
    :param order: where the kind's rules run in the pipeline: the ``order`` of the optimizer that runs them
        (a decision's ``fired`` mapping lists rulesets in this order).
    :param hit_policies: the hit policies a rule file of this kind may declare.
    :param channel_fields: ``then`` keys holding channel names (a list or one name): checked against the
        registered channels at load, and offered to reachability on the bulk path.
    :param strategy: whether messages name this kind in ``message.strategy`` (an optimization strategy;
        a message naming none has one creative per channel).
    :param validate: message-level checks of this kind (``validate(message) -> list[Issue]``, paths from the
        top of the message file), run for every message whether or not it has a ruleset of this kind.
    """

    name: str
    then_model: type[Any]
    outcome: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]
    order: int
    hit_policies: tuple[str, ...] = ("first", "collect")
    description: str = ""
    channel_fields: tuple[str, ...] = ()
    strategy: bool = False
    validate: Callable[[Message], list[Issue]] | None = None

    def channels(self, then: Mapping[str, Any]) -> list[str]:
        """The channel names a rule's ``then`` (validated) mentions, in order."""
        out: list[str] = []
        for key in self.channel_fields:
            value = then.get(key)
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, Sequence):
                out += [str(v) for v in value]
        return out


@runtime_checkable
class Evaluator(Protocol):
    """Evaluates a compiled ruleset (the neutral IR) against flat facts; returns fired rule ids in order."""

    name: str

    def fired(self, ruleset: Any, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Rule ids that fire: at most one under hit policy ``first``, all in priority order under ``collect``."""
        ...


@dataclass(frozen=True, slots=True)
class EvaluatorSpec:
    """A registered evaluator: its name (``--evaluator``), a factory making a fresh one, a description and the
    execution modes it runs in. The factory may import heavy modules; it runs only when the evaluator is
    asked for."""

    name: str
    create: Callable[[], Evaluator]
    description: str = ""
    #: the execution modes that serve this evaluator's semantics: ``per_recipient`` (its ``fired`` is called
    #: once per recipient) and/or ``bulk`` (the columnar plan decides, with the same answers)
    modes: tuple[str, ...] = ("per_recipient",)


@dataclass(frozen=True, slots=True)
class ContactField:
    """A customer attribute holding a contact handle (``phone``, ``email``, ``push_token`` …), registered by
    the plugins whose channels reach customers through it (``register_contact_fields``).

    The field catalogue offers it to rules as ``customer.<name>`` (a string), and both audience readers
    normalise it: a value ``normalise`` refuses is kept as read and its reason recorded in
    ``customer.handle_error.<name>`` (the channels reading it then answer ``invalid``: see
    :class:`engine.ContactReach`); the row is not bad. Without the plugins registering it, a column of that
    name is an ordinary attribute.

    :param name: the attribute (lower_snake_case, without ``customer.``).
    :param description: what the handle is, for the catalogue.
    :param normalise: the per-value check: a handle as text → its normalised form; ``ValueError`` with a plain
        reason that names the attribute and the value (``kakao_id 'x!' …``) otherwise. ``None``: the handle is
        taken as read (the channel checks it itself).
    :param normalise_column: the same over a polars String Series, vectorised: ``(normalised, errors)`` (null
        where there is no value / no error), or ``(normalised, errors, handle_types)`` when the field has a
        ``handle_type``. It must give ``normalise``'s answers value by value. ``None``: ``normalise`` once per
        distinct value.
    :param handle_type: the type of a normalised handle (a phone number's line type: ``mobile`` …), recorded in
        ``customer.handle_type.<name>`` so that the channels' column checks trust it.
    :param region: for phone-like fields, the region (ISO code) a number without ``+`` is read in; when set,
        ``normalise`` and ``normalise_column`` are called with ``region=`` as a keyword argument. Plugins
        registering one field must agree on it (one giving none takes the other's).
    :param rule: the handle rule in words (``a phone number in international form …``).

    Several plugins may register the same field when they use the same normalisers (compared by identity);
    different ones, or two different regions, are refused naming both plugins.
    """

    name: str
    description: str = ""
    normalise: Callable[..., str] | None = None
    normalise_column: Callable[..., Sequence[pl.Series]] | None = None
    handle_type: Callable[[str], str] | None = None
    region: str | None = None
    rule: str | None = None

    def check(self, value: str) -> str:
        """The normalised handle (``value`` itself when the field has no normaliser); ``ValueError`` says why
        it is malformed."""
        if self.normalise is None:
            return value
        if self.region:
            return self.normalise(value, region=self.region)
        return self.normalise(value)

    def agrees_with(self, other: ContactField) -> str | None:
        """Why ``other`` (the same field registered by another plugin) cannot be merged with this one, or None."""
        for member in ("normalise", "normalise_column", "handle_type"):
            if getattr(self, member) != getattr(other, member):
                return f"with different {member} functions"
        if self.region and other.region and self.region != other.region:
            return f"reading numbers without + in different regions ({self.region}, {other.region})"
        return None


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
    #: tells ``engine_event`` observers what happens to this draft (set by the pipeline only when there are any)
    observer: Callable[[EngineEvent], None] | None = None

    @property
    def watched(self) -> bool:
        """Whether anyone looks at drops and notes (a trace was asked for, or observers exist)."""
        return self.explain or self.observer is not None

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
        """Remove a candidate channel, trace why and tell observers (``channel_dropped``)."""
        if channel in self.channels:
            self.channels.remove(channel)
        self.note(step, "channel_dropped", channel=channel, why=why, **detail)
        if self.observer is not None:
            self.observer(EngineEvent("channel_dropped", self.customer.id,
                                      {"channel": channel, "step": step, "why": why, **detail}))


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
    ``state`` is scratch space optimizers may use to cache per-run work, keyed by their name: what depends on
    the message only (a context may serve several runs of one message, ``engine.run.Prepared``). The entry
    of the message's incentive type, ``state[kind]``, is its per-run scratch (e.g. a coupon preview's tally),
    dropped at the start of each run (:meth:`engine.finish.Finish.prepare`).
    ``ledger`` is where incentive types keep reservations (by default the registry's, ``registry.ledger``).
    """

    message: Message
    registry: Registry
    at: datetime
    run_rules: Callable[[str, DecisionDraft], Sequence[FiredRule]]
    preview: bool = True
    history: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=lambda: EMPTY)
    state: dict[str, Any] = field(default_factory=dict)
    ledger: LedgerStore = None  # type: ignore[assignment]  # filled from the registry when not given

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = self.registry.ledger

    @property
    def has_delivery_checks(self) -> bool:
        """Whether any plugin implements ``check_delivery`` (skip :meth:`check_delivery` when not)."""
        return self.registry.has_delivery_checks

    def check_delivery(self, draft: DecisionDraft, channel: str) -> list[Issue]:
        """Every ``check_delivery`` hook's issues for sending ``draft`` on ``channel`` (an error drops it)."""
        return self.registry.check_delivery(draft.customer, channel, self.message, draft)


# --- Optional columnar extensions (bulk evaluation over a polars frame) ------------------------------------
#
# A channel or optimizer MAY also implement the members below. Bulk mode (engine.columnar.bulk) can serve a
# message only when every optimizer in the pipeline that is active for the message implements ``columnar``
# and every candidate channel implements ``reachability_expr``; otherwise ``mode="auto"`` runs per recipient
# (always correct) and an explicit ``mode="bulk"`` is an error (engine.run.choose_mode).
#
# A columnar step sees one row per recipient, with one column per fact named by its path (``customer.id``,
# ``customer.tier``, ``time.local_hour`` …; missing values are null, list fields List(String), dates ISO
# strings). The decision so far is reached only through the ``ColumnarContext`` (engine.columnar.context):
# ``ctx.included``, ``ctx.variant``, ``ctx.channels``, ``ctx.send_at`` read it; ``ctx.exclude``,
# ``ctx.exclude_where``, ``ctx.set_variant``, ``ctx.set_channels``, ``ctx.set_send_at`` change it on the
# included rows only (so the first exclusion reason wins); ``ctx.run_rules(frame, kind)`` records which rules
# of a ruleset fired, read back with ``ctx.fired_index(kind)`` and ``ctx.outcome(kind, key)``;
# ``ctx.reachable(channel)`` is the channel's reachability. The columns behind these are the plan's business.
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
    """An optimizer that can also run over a whole frame (see the conventions above)."""

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """Return ``frame`` with this step applied to the included rows, through ``ctx`` (an
        ``engine.ColumnarContext``). The result must equal running ``apply`` on every row."""
        ...
