"""Whole-message validation: strategy, channels, creatives (through their channel plugins), tags,
incentive and schedule. Returns issues with paths into the message file (``creatives[0].content.body``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.contracts import ValidatingOptimizer
from engine.errors import UnknownReference
from engine.fields import FieldCatalogue
from engine.model import Issue, Message
from engine.registry import Registry
from engine.scheduling import parse_hhmm, recurrence
from engine.templating import check_tags


def unknown_keys(content: Mapping[str, Any], allowed: Iterable[str], what: str) -> list[Issue]:
    """An ``unknown_key`` issue for every key of ``content`` not in ``allowed`` (``what`` names the thing)."""
    allowed = set(allowed)
    return [Issue(str(k), "unknown_key", f"unknown {what} field {k!r}") for k in content if k not in allowed]


def known_tags(message: Message, registry: Registry, catalogue: FieldCatalogue) -> set[str]:
    """Template variables any creative of ``message`` may use (channel tags are added per channel).

    ``vars.<key>`` is known only for the keys some rule of the message sets in its ``then.vars``.
    """
    tags = {s.path for s in catalogue if s.path.startswith(("customer.", "message."))}
    tags |= {"customer.subscription.*", "message.title", "campaign.name", "campaign.id"}
    tags |= {f"vars.{key}" for key in rule_vars(message)}
    for reg in registry.incentives.values():
        tags |= set(reg.obj.tags)
    return tags


def rule_vars(message: Message) -> set[str]:
    """The ``vars`` keys set by the ``then`` of any rule of the message's rulesets."""
    return {str(key) for rs in message.rulesets.values() for rule in rs.rules
            for key in (rule.then.get("vars") or {})}


#: the strategy that adds ad channels (audience exports) to a message; every other strategy is a rule kind's
AD_STRATEGY = "x_engage"


def strategies(registry: Registry) -> list[str]:
    """The names ``message.strategy`` may hold: the rule kinds registered as strategies, and x_engage."""
    return [*(k.name for k in registry.kinds.values() if k.strategy), AD_STRATEGY]


def optimized(message: Message) -> bool:
    """Whether the message names an optimization strategy (a rule kind's; x_engage adds channels only)."""
    return any(s != AD_STRATEGY for s in message.strategy)


def validate_message(message: Message, registry: Registry, catalogue: FieldCatalogue) -> list[Issue]:
    """Every problem with ``message`` (errors and warnings), each with the path of the field at fault."""
    issues: list[Issue] = []
    for kind in registry.kinds.values():  # each kind's own checks (a strategy needing its ruleset …)
        if kind.validate is not None:
            issues += kind.validate(message)
    if not optimized(message):
        seen: dict[str, int] = {}
        for i, c in enumerate(message.creatives):
            if c.channel in seen:
                issues.append(Issue(f"creatives[{i}].channel", "duplicate_creative",
                                    f"without optimization a message has one creative per channel; {c.channel} repeats creatives[{seen[c.channel]}]"))
            seen[c.channel] = i

    for j, name in enumerate(message.channels):
        if name not in registry.channels:
            issues.append(Issue(f"channels[{j}]", "unknown_channel", _unknown_channel(name, registry)))

    base_tags = known_tags(message, registry, catalogue)
    incentive_tags = {t: kind for kind, reg in registry.incentives.items() for t in reg.obj.tags}
    shown: set[str] = set()
    for i, creative in enumerate(message.creatives):
        where = f"creatives[{i}]"
        try:
            channel = registry.channel(creative.channel)
        except UnknownReference:
            issues.append(Issue(f"{where}.channel", "unknown_channel", _unknown_channel(creative.channel, registry)))
            continue
        if AD_STRATEGY not in message.strategy and channel.kind == "ad":
            issues.append(Issue(f"{where}.channel", "strategy", f"{creative.channel} is an ad channel: add x_engage to the strategy"))
        issues += [Issue(_creative_path(where, x.path), x.code, x.message, x.severity)
                   for x in channel.validate(creative, message)]
        tag_issues, used = check_tags(creative.content, base_tags | set(channel.tags), channel.required_tags,
                                      prefix=f"{where}.content",
                                      required_in=getattr(channel, "required_tag_fields", None))
        issues += tag_issues
        for tag in used:
            kind = next((k for t, k in incentive_tags.items() if tag == t or tag.startswith(t + ".")), None)
            if kind is None:
                continue
            shown.add(kind)
            if message.incentive is None:
                issues.append(Issue(f"{where}.content", "incentive_required", f"the {{{{ {tag} }}}} tag needs a {kind} incentive on the message"))
            elif message.incentive.kind != kind:
                issues.append(Issue(f"{where}.content", "incentive_mismatch", f"the {{{{ {tag} }}}} tag needs a {kind} incentive; the message has {message.incentive.kind}"))

    if message.incentive is not None:
        try:
            itype = registry.incentive(message.incentive.kind)
        except UnknownReference as exc:
            issues.append(Issue("incentive.kind", "unknown_incentive", str(exc)))
        else:
            found = list(itype.validate(message.incentive.settings, message))
            check_fields = getattr(itype, "check_fields", None)  # optional: field references vs the catalogue
            if check_fields is not None:
                found += check_fields(message.incentive.settings, catalogue)
            issues += [Issue(f"incentive.settings.{x.path}".rstrip("."), x.code, x.message, x.severity)
                       for x in found]
            if message.incentive.kind not in shown:
                issues.append(Issue("incentive", "incentive_not_shown",
                                    f"no creative shows the {message.incentive.kind} incentive's tags", "warning"))
    issues += _optimizer_issues(message, registry)
    issues += _schedule_issues(message)
    return issues


def _optimizer_issues(message: Message, registry: Registry) -> list[Issue]:
    """Settings for unknown optimizers, and each optimizer's own ``validate(message)`` when it has one."""
    out = []
    for name in message.optimizers:
        if name not in registry.optimizers:
            out.append(Issue(f"optimizers.{name}", "unknown_optimizer",
                             f"unknown optimizer {name!r}; registered: {', '.join(sorted(registry.optimizers))}"))
    for name, reg in registry.optimizers.items():
        if isinstance(reg.obj, ValidatingOptimizer) and name in message.optimizers:
            out += [Issue(f"optimizers.{name}.{i.path}".rstrip("."), i.code, i.message, i.severity)
                    for i in reg.obj.validate(message)]
    return out


def _schedule_issues(message: Message) -> list[Issue]:
    s, c = message.schedule, message.campaign
    out = []
    if s.at is not None and s.at.tzinfo is None:
        out.append(Issue("schedule.at", "timezone_required", "the date-time needs a time zone offset, e.g. +05:30"))
    elif s.kind == "at":
        if s.at is None:
            out.append(Issue("schedule.at", "required", "an 'at' schedule needs a date-time"))
        else:
            day = s.at.date()
            if (c.starts and day < c.starts) or (c.ends and day > c.ends):
                out.append(Issue("schedule.at", "outside_campaign", f"{s.at.isoformat()} is outside the campaign window {c.starts} – {c.ends}"))
    if s.kind == "recurring":
        out += _recurring_issues(message)
    elif s.rrule:
        out.append(Issue("schedule.rrule", "schedule_kind", f"an RRULE needs kind: recurring (this schedule is {s.kind})"))
    if s.quiet_hours:
        for k, v in enumerate(s.quiet_hours):
            try:
                parse_hhmm(v)
            except ValueError as exc:
                out.append(Issue(f"schedule.quiet_hours[{k}]", "time_format", str(exc)))
        if s.quiet_hours[0] == s.quiet_hours[1]:
            out.append(Issue("schedule.quiet_hours", "time_format", "quiet hours must not start and end at the same time"))
    return out


def _recurring_issues(message: Message) -> list[Issue]:
    """A recurring schedule's RRULE parses, starts (``schedule.at`` or ``campaign.starts``), ends, and stays
    inside the campaign window."""
    s = message.schedule
    if not s.rrule:
        return [Issue("schedule.rrule", "required", "a recurring schedule needs an RRULE, e.g. FREQ=WEEKLY;BYDAY=MO")]
    if s.at is not None and s.at.tzinfo is None:
        return []  # the missing offset is reported on schedule.at
    try:
        recurrence(s, message.campaign)
    except ValueError as exc:
        return [Issue("schedule.rrule", "rrule", str(exc))]
    return []


def _creative_path(where: str, path: str) -> str:
    """A channel's issue path: inside the creative's content, unless it names a message-level section."""
    if path.startswith(MESSAGE_SECTIONS):
        return path
    return f"{where}.content.{path}".rstrip(".")


#: Issue paths starting with one of these point outside the creative (e.g. ``delivery.senders.viber.sender_name``).
MESSAGE_SECTIONS = ("delivery.", "schedule.", "incentive.", "message.")


def _unknown_channel(name: str, registry: Registry) -> str:
    return f"unknown channel {name!r}; registered: {', '.join(sorted(registry.channels))}"
