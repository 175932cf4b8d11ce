"""Call task: not a send but a to-do for a call centre — a script, a call window in the customer's local
time, a queue, custom labels and the outcome fields the agent fills in. Reachable when there is a phone.

Settings (plugin ``plugins.channels.call_task``): ``cost`` (default 0.5: an agent's call), ``queues``
(optional list of known queue names), ``default_region`` (for numbers stored without ``+``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import (
    PHONE_TYPE_NAMES,
    ContactField,
    ContactReach,
    Creative,
    Customer,
    Issue,
    Message,
    Reachability,
    SendContext,
    SendResult,
    e164_number,
    hookimpl,
    lazy,
    phone_line_type,
    phone_number,
    phone_numbers,
    render_content,
    transport_send,
    unknown_keys,
)
from plugins.channels import setting_checks as setting

if TYPE_CHECKING:
    import polars as pl
else:  # imported when a frame is first used
    pl = lazy("polars")

OUTCOME_TYPES = ("choice", "text", "number", "boolean", "date")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class CallTask:
    """The call-task channel (``kind="task"``): renders a task for an agent queue instead of a message."""

    name = "call_task"
    kind = "task"
    required_tags: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    creative_schema: Mapping[str, Any] = {
        "type": "object",
        "required": ["script", "queue"],
        "properties": {
            "script": {"type": "string", "minLength": 1, "description": "what the agent says (Liquid)"},
            "queue": {"type": "string", "minLength": 1},
            "call_window": {"type": "object", "required": ["start", "end"], "properties": {
                "start": {"type": "string", "pattern": "^([01]\\d|2[0-3]):[0-5]\\d$"},
                "end": {"type": "string", "pattern": "^([01]\\d|2[0-3]):[0-5]\\d$"}}},
            "priority": {"enum": ["low", "normal", "high"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "outcomes": {"type": "array", "items": {"type": "object", "required": ["name", "type"], "properties": {
                "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}, "type": {"enum": list(OUTCOME_TYPES)},
                "options": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "required": {"type": "boolean"}}}},
        },
        "additionalProperties": False,
    }

    def __init__(self, settings: Mapping[str, Any]):
        self.cost = setting.number(settings, "cost", 0.5)
        self.queues = setting.texts(settings, "queues", None)
        self.region = setting.region(settings)
        self._reach = ContactReach(self.name, "phone", kinds=PHONE_TYPE_NAMES, valid=lambda v: e164_number(v, self.region) is not None,
                                   rule="a valid phone number in international form (+ and country code)")

    def sample_creatives(self) -> list[Mapping[str, Any]]:
        """Valid example contents (used by docs and the contract test kit)."""
        return [{"script": "Hello {{ customer.first_name | default: 'there' }}, this is Herald about our summer sale.",
                 "queue": "retention", "call_window": {"start": "10:00", "end": "18:00"},
                 "labels": {"reason": "lapsed"},
                 "outcomes": [{"name": "result", "type": "choice", "options": ["interested", "not_interested"]}]}]

    def validate(self, creative: Creative, message: Message) -> list[Issue]:
        """Script and queue required; call window as HH:MM with start ≠ end; labels text; outcome fields
        named, typed, unique, and choices with at least two options."""
        content = creative.content
        issues = unknown_keys(content, self.creative_schema["properties"], "call task")
        for key in ("script", "queue"):
            if not isinstance(content.get(key), str) or not content[key].strip():
                issues.append(Issue(key, "required", f"the call task {key} is required"))
        if self.queues is not None and isinstance(content.get("queue"), str) and content["queue"] not in self.queues:
            issues.append(Issue("queue", "unknown_queue", f"queue {content['queue']!r} is not one of {', '.join(self.queues)}"))
        if content.get("priority") not in (None, "low", "normal", "high"):
            issues.append(Issue("priority", "enum", "priority is low, normal or high"))
        window = content.get("call_window")
        if window is not None:
            issues += _window_issues(window)
        labels = content.get("labels", {})
        if not isinstance(labels, Mapping):
            issues.append(Issue("labels", "type", "labels map a label name to its text"))
        else:
            issues += [Issue(f"labels.{k}", "type", f"label {k!r} needs a text value") for k, v in labels.items() if not isinstance(v, str)]
        issues += _outcome_issues(content.get("outcomes", []))
        return issues

    def reachability(self, customer: Customer, message: Message) -> Reachability:
        """No phone → contact_unavailable; a recorded unreachable status wins; an invalid number → invalid."""
        return self._reach.of(customer)

    def reachability_reason(self, customer: Customer, message: Message) -> str | None:
        """Why the customer cannot be called (None when they can), for the trace."""
        return self._reach.reason(customer)

    def reachability_expr(self, message: Message) -> pl.Expr:
        """``reachability`` over a frame with ``customer.phone`` and ``customer.subscription.call_task``."""
        return self._reach.expr()

    async def send(self, payload: Mapping[str, Any], ctx: SendContext) -> SendResult:
        """Send the task to the call-centre queue (the customer's ``phone`` as recipient) through ``ctx.transport``."""
        return await transport_send(self.name, payload, ctx, to=payload.get("phone"))

    def render(self, creative: Creative, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """A task for the call-centre queue: who to call, when, what to say, and the outcome form."""
        content = render_content(dict(creative.content), context)
        customer = context["customer"]
        phone = customer.get("phone")
        task: dict[str, Any] = {
            "type": "call_task",
            "queue": content["queue"],
            "priority": content.get("priority", "normal"),
            "customer_id": customer["id"],
            "phone": e164_number(str(phone), self.region) or phone,
            "script": content["script"],
            "labels": dict(content.get("labels", {})),
            "outcomes": [dict(o) for o in content.get("outcomes", [])],
        }
        if content.get("call_window"):
            task["call_window"] = {**content["call_window"], "timezone": customer.get("timezone") or "UTC"}
        return task


def _window_issues(window: Any) -> list[Issue]:
    if not isinstance(window, Mapping):
        return [Issue("call_window", "type", "call_window has start and end as HH:MM")]
    issues = [Issue(f"call_window.{k}", "time_format", f"call_window.{k} must be HH:MM (00:00–23:59)")
              for k in ("start", "end") if not _HHMM.fullmatch(str(window.get(k, "")))]
    if not issues and window["start"] == window["end"]:
        issues.append(Issue("call_window.end", "empty_window", "the call window is empty: start equals end"))
    return issues


def _outcome_issues(outcomes: Any) -> list[Issue]:
    if not isinstance(outcomes, list):
        return [Issue("outcomes", "type", "outcomes is a list of fields the agent fills in")]
    issues, seen = [], set()
    for i, o in enumerate(outcomes):
        where = f"outcomes[{i}]"
        if not isinstance(o, Mapping):
            issues.append(Issue(where, "type", f"{where} must be an object with name and type"))
            continue
        name = o.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            issues.append(Issue(f"{where}.name", "format", f"{where}.name must be lower_snake_case"))
        elif name in seen:
            issues.append(Issue(f"{where}.name", "duplicate", f"outcome field {name!r} appears twice"))
        seen.add(name)
        if o.get("type") not in OUTCOME_TYPES:
            issues.append(Issue(f"{where}.type", "enum", f"{where}.type must be one of {', '.join(OUTCOME_TYPES)}"))
        options = o.get("options")
        if o.get("type") == "choice" and (not isinstance(options, list) or len(set(map(str, options))) < 2):
            issues.append(Issue(f"{where}.options", "required", f"{where} is a choice and needs at least two distinct options"))
    return issues


@hookimpl
def register_channels(register, settings):
    """Register the call-task channel."""
    register(CallTask(settings))


@hookimpl
def register_contact_fields(register, settings):
    """Register ``phone`` (read in the ``default_region`` setting when numbers have no ``+``)."""
    register(ContactField("phone", "phone number, E.164", normalise=phone_number, normalise_column=phone_numbers,
                          handle_type=phone_line_type, region=setting.region(settings),
                          rule="a valid phone number in international form (+ and country code)"))
