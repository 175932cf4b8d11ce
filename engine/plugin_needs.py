"""The plugins a message needs that ``HERALD_PLUGINS`` / ``HERALD_DISABLE_PLUGINS`` left out.

A channel, incentive type, optimizer or rule kind that no loaded plugin registers is usually a typo ("unknown
channel"); but when an installed plugin left out by the lists would have registered it, the message is told so:
the problem names the plugin as the user wrote it, the list, and what to change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.errors import Problem
from engine.registry import Registry
from engine.rulefiles.ir import Ruleset
from engine.sourcefile import SourceData, dotted

CODE = "plugin_left_out"


def _needs(data: Mapping[str, Any]) -> Iterator[tuple[tuple[Any, ...], str, Any]]:
    """``(place, what, name)`` for every plugin-registered name a message file's data uses."""
    for j, name in enumerate(data.get("channels") or ()):
        yield ("channels", j), "channel", name
    for i, creative in enumerate(data.get("creatives") or ()):
        if isinstance(creative, Mapping):
            yield ("creatives", i, "channel"), "channel", creative.get("channel")
    incentive = data.get("incentive")
    if isinstance(incentive, Mapping):
        yield ("incentive", "kind"), "incentive type", incentive.get("kind")
    for name in data.get("optimizers") or ():
        yield ("optimizers", name), "optimizer", name
    for kind in data.get("rules") or ():
        yield ("rules", kind), "rule kind", kind
    head = data.get("message")
    for i, name in enumerate(head.get("strategy") or () if isinstance(head, Mapping) else ()):
        yield ("message", "strategy", i), "rule kind", name


def _registered(registry: Registry, what: str) -> Mapping[str, Any]:
    return {"channel": registry.channels, "incentive type": registry.incentives, "optimizer": registry.optimizers,
            "rule kind": registry.rule_kinds}[what]


def left_out_problems(src: SourceData, registry: Registry) -> list[Problem]:
    """A problem for each name the message file uses that only a left-out plugin registers."""
    if not registry.left_out or not isinstance(src.data, Mapping):
        return []
    out = []
    for place, what, name in _needs(src.data):
        if not isinstance(name, str) or name in _registered(registry, what):
            continue
        plugin = registry.left_out_giving(what, name)
        if plugin is not None:
            out.append(src.problem(f"{what} {name!r} is registered by plugin {plugin.name!r}, {plugin.why()}; this "
                                   f"message needs it: {plugin.fix()}, or take {name} out of the message",
                                   place, CODE, dotted(place)))
    return out


def rule_channel_problems(src: SourceData, kind: str, rel: str, ruleset: Ruleset, registry: Registry) -> list[Problem]:
    """A problem (at the message's ``rules.<kind>``) for each channel a rule of ``ruleset`` names that only a
    left-out plugin registers."""
    rule_kind = registry.kinds.get(ruleset.kind)
    if not registry.left_out or rule_kind is None:
        return []
    out = []
    for rule in ruleset.rules:
        for key in rule_kind.channel_fields:
            value = rule.then.get(key)
            for name in [value] if isinstance(value, str) else list(value or ()):
                plugin = None if name in registry.channels else registry.left_out_giving("channel", name)
                if plugin is not None:
                    out.append(src.problem(
                        f"rule {rule.id} of {rel} names channel {name!r} of plugin {plugin.name!r}, "
                        f"{plugin.why()}: {plugin.fix()}, or take {name} out of the rule",
                        ("rules", kind), CODE, f"rules.{kind}"))
    return out
