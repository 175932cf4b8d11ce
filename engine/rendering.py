"""Rendering one recipient's creative on one channel: the Liquid context, the channel's ``render`` and its
compliance check. The pipeline renders the first channel that passes; delivery calls :func:`render_for` to
render a fallback channel on demand when a send on the first one fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.contracts import DecisionDraft
from engine.errors import EngineError, TemplateError
from engine.model import EMPTY, Customer, Decision, Issue, Message
from engine.templating import missing_values

if TYPE_CHECKING:
    from engine.registry import Registry


def render_context(message: Message, draft: DecisionDraft, channel: str, channel_tags: Mapping[str, Any]) -> dict[str, Any]:
    """The Liquid context of one recipient: customer, message, campaign, vars, incentive, channel tags,
    and ``delivery.sender`` (the message's sender settings for ``channel``).

    Customer data sits under ``customer`` and rule data under ``vars``; the channel's tags (the opt-out
    text …) are set last, so nothing else can replace or empty them."""
    customer: dict[str, Any] = {"id": draft.customer.id}
    for key, value in draft.customer.attributes.items():
        node = customer
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    ctx: dict[str, Any] = {
        "customer": customer,
        "message": {"id": message.id, "title": message.title, "type": message.type},
        "campaign": {"id": message.campaign.id, "name": message.campaign.name},
        "vars": dict(draft.vars),
        "delivery": {"sender": dict(message.delivery.senders.get(channel, {})), "tiny_url": message.delivery.tiny_url},
    }
    if draft.incentive is not None and message.incentive is not None:
        ctx[message.incentive.kind] = dict(draft.incentive)
    ctx.update(channel_tags)
    return ctx


def compliance_issues(channel: Any, payload: Mapping[str, Any], context: Mapping[str, Any], *,
                      preview: bool = True) -> list[Issue]:
    """What a rendered payload lacks or breaks: the channel's own ``compliance`` check when it has one,
    else the value of every required tag (from the channel's ``tags``) must appear in the payload."""
    check = getattr(channel, "compliance", None)
    if check is not None:
        return list(check(payload, context, preview=preview))
    values = {t: channel.tags[t] for t in channel.required_tags if isinstance(channel.tags.get(t), str)}
    return missing_values(payload, values)


@dataclass(frozen=True, slots=True)
class Rendering:
    """One channel's rendering for one recipient: the payload, or why there is none (``template_error`` with
    the error text, or ``compliance`` with the issues found in the rendered payload)."""

    channel: str
    payload: Mapping[str, Any] | None
    failure: str | None = None
    error: str | None = None
    problems: tuple[Issue, ...] = ()
    context: Mapping[str, Any] = field(default_factory=lambda: EMPTY, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the payload rendered and passed the channel's compliance check."""
        return self.failure is None


def render_for(message: Message, source: Decision | DecisionDraft, channel: str, registry: Registry, *,
               customer: Customer | None = None, vars: Mapping[str, Any] | None = None,
               preview: bool = True) -> Rendering:
    """Render ``message``'s creative for one recipient on ``channel`` (any channel: the chosen one or a
    fallback), and check it for compliance.

    :param source: the recipient's ``DecisionDraft`` (during evaluation), or its ``Decision`` (afterwards; a
        decision holds only the customer's id, so pass ``customer``, and the rule ``vars`` it was decided with).
    :param preview: ``False`` for a real send (compliance is stricter, e.g. signed unsubscribe links).
    :raises EngineError: an excluded decision, a missing ``customer``, or no creative for the channel.
    """
    draft = _draft_of(source, customer, vars)
    creative = message.creative(channel, draft.variant)
    if creative is None:
        raise EngineError(f"message {message.id!r} has no creative for channel {channel!r} (variant "
                          f"{draft.variant!r})")
    target = registry.channel(channel)
    context = render_context(message, draft, channel, target.tags)
    try:
        payload = target.render(creative, context)
    except TemplateError as exc:
        return Rendering(channel, None, "template_error", str(exc), context=context)
    problems = tuple(compliance_issues(target, payload, context, preview=preview))
    if problems:
        return Rendering(channel, None, "compliance", problems=problems, context=context)
    return Rendering(channel, payload, context=context)


def _draft_of(source: Decision | DecisionDraft, customer: Customer | None,
              vars: Mapping[str, Any] | None) -> DecisionDraft:
    """The draft to render from: ``source`` itself, or one rebuilt from a decision and its customer."""
    if isinstance(source, DecisionDraft):
        return source
    if not source.included:
        raise EngineError(f"customer {source.customer!r} is excluded ({source.excluded_reason}): nothing to render")
    if customer is None or customer.id != source.customer:
        raise EngineError(f"rendering the decision of customer {source.customer!r} needs that customer")
    return DecisionDraft(customer, {}, source.send_at, variant=source.variant, vars=dict(vars or {}),
                         incentive=source.incentive)
