"""Resources several messages may share (a coupon series), and the settings they must agree on.

An incentive type says what a message shares through its optional ``shared(spec, message) -> (key,
settings)`` member (``key`` names the resource as printed, e.g. ``series 'summer-vip'``); two messages naming the same key with different settings are refused, naming both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.errors import Problem
from engine.model import Message
from engine.registry import Registry


def shared_resource(message: Message, registry: Registry) -> tuple[tuple[str, str], Mapping[str, Any]] | None:
    """``((incentive kind, key), settings)`` of what ``message`` shares, or ``None``."""
    spec = message.incentive
    if spec is None or spec.kind not in registry.incentives:
        return None
    shared = getattr(registry.incentive(spec.kind), "shared", None)
    if shared is None:
        return None
    key, settings = shared(spec.settings, message)
    return (spec.kind, str(key)), settings


def shared_conflicts(message: Message, others: Iterable[Message], registry: Registry) -> list[Problem]:
    """A problem for every message of ``others`` that shares a resource with ``message`` under other settings."""
    mine = shared_resource(message, registry)
    if mine is None:
        return []
    (kind, key), settings = mine
    out = []
    for other in others:
        theirs = shared_resource(other, registry) if other.id != message.id else None
        if theirs is None or theirs[0] != mine[0] or dict(theirs[1]) == dict(settings):
            continue
        differ = [k for k in dict.fromkeys([*settings, *theirs[1]]) if settings.get(k) != theirs[1].get(k)]
        detail = "; ".join(f"{k}: {settings.get(k)!r} here, {theirs[1].get(k)!r} there" for k in differ)
        where = f" ({other.source})" if other.source else ""
        out.append(Problem(f"message {message.id!r} shares the {kind} {key} with message {other.id!r}{where}, "
                           f"with different settings ({detail}); give them the same settings or separate series",
                           "shared_conflict", message.source, path=f"incentive.settings.{differ[0]}"))
    return out


def check_messages(messages: Sequence[Message], registry: Registry) -> list[Problem]:
    """Every conflict among ``messages`` (each pair reported once, on the later message)."""
    return [p for i, m in enumerate(messages) for p in shared_conflicts(m, messages[:i], registry)]
