"""Events the engine reports to ``engine_event`` observers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.model import EMPTY

EventKind = Literal[
    "decision_made", "rule_fired", "channel_dropped", "incentive_reserved", "send_attempted", "send_finished"
]


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """Something that happened: its kind, the customer (when there is one) and details."""

    kind: EventKind
    customer: str | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
