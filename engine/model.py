"""Domain types shared by the engine, plugins and adapters. Plain frozen dataclasses, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

EMPTY: Mapping[str, Any] = MappingProxyType({})

class Reachability(StrEnum):
    """What a channel knows about reaching one customer.

    The recorded statuses (``subscription.<channel>``) are a closed set, :data:`SUBSCRIPTION_STATUSES`;
    ``dnd`` is never recorded: a channel that honours the do-not-disturb registry (``customer.dnd``)
    answers it. An unknown recorded value is never reachable."""

    VALID = "valid"
    SUBSCRIBED = "subscribed"
    UNABLE_TO_VERIFY = "unable_to_verify"
    SOFT_BOUNCED = "soft_bounced"
    HARD_BOUNCED = "hard_bounced"
    CONTACT_UNAVAILABLE = "contact_unavailable"
    UNSUBSCRIBED = "unsubscribed"
    INVALID = "invalid"
    DND = "dnd"

    @classmethod
    def recorded(cls, customer: Customer, channel: str, contact: str | None) -> Reachability:
        """The usual answer for a direct channel: no contact handle → contact_unavailable; otherwise the
        recorded ``subscription.<channel>`` status (``valid`` when nothing is recorded); a value outside
        :data:`SUBSCRIPTION_STATUSES` → ``invalid`` (never reachable)."""
        if not customer.attributes.get(contact) if contact else False:
            return cls.CONTACT_UNAVAILABLE
        status = customer.attributes.get(f"subscription.{channel}")
        if status is None:
            return cls.VALID
        return cls(status) if status in SUBSCRIPTION_STATUSES else cls.INVALID

    @property
    def reachable(self) -> bool:
        """Whether a send on this channel may be attempted."""
        return self in _REACHABLE


_REACHABLE = frozenset(
    {Reachability.VALID, Reachability.SUBSCRIBED, Reachability.UNABLE_TO_VERIFY, Reachability.SOFT_BOUNCED}
)

#: The values a ``subscription.<channel>`` attribute may hold (anything else is a bad audience row).
SUBSCRIPTION_STATUSES: tuple[str, ...] = tuple(r.value for r in Reachability if r is not Reachability.DND)


@dataclass(frozen=True, slots=True)
class Customer:
    """One recipient: an external id and flat attributes (``tier``, ``phone``, ``subscription.sms`` …).

    Attribute keys are field paths without the ``customer.`` prefix; ``None`` means missing. Contact handles
    are the attributes plugins register as contact fields (``engine.ContactField``; ``registry.contacts``).
    """

    id: str
    attributes: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    def get(self, name: str, default: Any = None) -> Any:
        """An attribute by its path (``id`` included), or ``default`` when missing."""
        if name == "id":
            return self.id
        value = self.attributes.get(name)
        return default if value is None else value

    @property
    def timezone(self) -> str | None:
        """The IANA time zone of the customer, when known."""
        return self.attributes.get("timezone")

    def subscription(self, channel: str) -> str | None:
        """The recorded subscription/reachability status for ``channel`` (``None`` when unknown)."""
        return self.attributes.get(f"subscription.{channel}")


@dataclass(frozen=True, slots=True)
class Issue:
    """A validation finding on a creative, incentive or message; ``path`` points at the field."""

    path: str
    code: str
    message: str
    severity: Literal["error", "warning"] = "error"

    @property
    def is_error(self) -> bool:
        """True unless this is only a warning."""
        return self.severity == "error"


@dataclass(frozen=True, slots=True)
class Campaign:
    """The campaign a message belongs to; its dates bound schedules and coupon validity."""

    id: str
    name: str = ""
    starts: date | None = None
    ends: date | None = None
    objective: str | None = None


@dataclass(frozen=True, slots=True)
class Creative:
    """One channel's content for one variant. ``content`` is channel-specific (Liquid templates)."""

    channel: str
    variant: str = "default"
    content: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class IncentiveSpec:
    """The incentive attached to a message: a registered kind (``coupon``, ``points``) and its settings."""

    kind: str
    settings: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a message goes out: ``immediate``, ``at`` one time, or ``recurring`` (an RRULE)."""

    kind: Literal["immediate", "at", "recurring"] = "immediate"
    at: datetime | None = None
    rrule: str | None = None
    local_time: str | None = None  # "HH:MM" in the recipient's time zone
    quiet_hours: tuple[str, str] | None = None  # ("21:00", "09:00") local


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Per-message delivery switches and per-channel sender settings."""

    send_to_dnd: bool = False
    send_to_control: bool = False
    tiny_url: bool = False
    senders: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class Message:
    """A campaign message ready for evaluation: rules, creatives, incentive, schedule and settings.

    ``rulesets`` maps a registered rule kind (``eligibility``, ``personalization``, ``channel_priority``,
    ``audience_filter``) to a compiled ruleset; ``channels`` is the static priority order used when no
    channel_priority ruleset picks one. ``optimizers`` carries per-optimizer settings by name.
    """

    id: str
    title: str
    campaign: Campaign
    type: Literal["broadcast", "bounceback", "timeline"] = "broadcast"
    strategy: tuple[str, ...] = ()
    rulesets: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    channels: tuple[str, ...] = ()
    creatives: tuple[Creative, ...] = ()
    incentive: IncentiveSpec | None = None
    schedule: Schedule = field(default_factory=Schedule)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    optimizers: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: EMPTY)
    source: str | None = None
    #: findings that do not stop the message from loading (e.g. a coupon without expiry), for the user to see
    warnings: tuple[Issue, ...] = ()

    def creative(self, channel: str, variant: str | None) -> Creative | None:
        """The creative for ``channel`` and ``variant``, falling back to the ``default`` variant."""
        fallback = None
        for c in self.creatives:
            if c.channel == channel:
                if c.variant == variant:
                    return c
                if c.variant == "default":
                    fallback = c
        return fallback

    @property
    def facts(self) -> Mapping[str, Any]:
        """The ``message.*`` facts rules may test."""
        return {
            "message.id": self.id,
            "message.type": self.type,
            "message.campaign": self.campaign.id,
            "message.objective": self.campaign.objective,
        }


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One line of a decision's explanation: the step, what happened, and the details."""

    step: str
    event: str
    detail: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"step": self.step, "event": self.event, **dict(self.detail)}


@dataclass(slots=True)
class Decision:
    """The per-recipient result of evaluation (PRODUCT.md §4). Treat it as read-only.

    Not a frozen dataclass on purpose: a frozen one costs ~5 µs to build, more than deciding takes.
    """

    customer: str
    included: bool
    excluded_reason: str | None = None
    variant: str | None = None
    channel: str | None = None
    fallbacks: tuple[str, ...] = ()
    incentive: Mapping[str, Any] | None = None
    rendered: Mapping[str, Any] | None = None
    send_at: datetime | None = None
    rules_versions: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    fired: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: EMPTY)
    trace: tuple[TraceStep, ...] = ()
    #: the template variables the rules set for this recipient (what a later render of a fallback channel
    #: needs; per recipient only); not part of ``as_dict`` nor of equality
    vars: Mapping[str, Any] = field(default_factory=lambda: EMPTY, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (datetimes as ISO 8601)."""
        return {
            "customer": self.customer,
            "included": self.included,
            "excluded_reason": self.excluded_reason,
            "variant": self.variant,
            "channel": self.channel,
            "fallbacks": list(self.fallbacks),
            "incentive": dict(self.incentive) if self.incentive is not None else None,
            "rendered": dict(self.rendered) if self.rendered is not None else None,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "rules_versions": dict(self.rules_versions),
            "fired": {k: list(v) for k, v in self.fired.items()},
            "trace": [t.as_dict() for t in self.trace],
        }
