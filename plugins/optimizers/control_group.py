"""Control group: a deterministic hash split that holds a share of the audience back (PRODUCT.md §2).

Active for a message when ``message.optimizers["control_group"]`` is present (``{}`` means the default
10 %), or for every message when the plugin's settings give ``percent`` (an org-wide split); a message may
switch an org split off with ``{percent: 0}``. Settings: ``percent`` (0–100, default 10) and ``level``:
``campaign`` (default: the split is keyed on the campaign id, so each campaign has its own control group)
or ``org`` (keyed on the org ``salt`` only: the same customers are held out of every campaign).

A control member is excluded with reason ``control_group`` unless ``message.delivery.send_to_control``,
in which case the draft is kept and the trace says it is a control member.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import DecisionDraft, EvaluationContext, Issue, Message, hookimpl

if TYPE_CHECKING:
    import polars as pl

    from engine import ColumnarContext

BUCKETS = 10_000  # percentages to two decimals


SETTINGS = ("percent", "level", "salt")


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with the org-wide settings, each starting with the setting's name (empty: fine)."""
    out = []
    percent = settings.get("percent", 10)
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
        out.append(f"percent: a number from 0 to 100, not {percent!r}")
    if settings.get("level", "campaign") not in ("campaign", "org"):
        out.append(f"level: campaign or org, not {settings['level']!r}")
    if not isinstance(settings.get("salt", ""), str) or settings.get("salt") == "":
        out.append(f"salt: a non-empty text, not {settings['salt']!r}")
    return out


def bucket(key: str, customer_id: str) -> int:
    """The customer's bucket 0–9999 for a split key (SHA-256: stable across processes and versions)."""
    digest = hashlib.sha256(f"{key}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


class ControlGroup:
    """Step 1b (order 20): after the audience filter, before eligibility rules."""

    name = "control_group"
    order = 20

    def __init__(self, settings: Mapping[str, Any]):
        self.defaults = {k: settings[k] for k in SETTINGS if k in settings}
        problems = settings_problems(self.defaults)
        if problems:
            raise ValueError("; ".join(problems))

    def config(self, message: Message) -> tuple[str, int] | None:
        """``(split key, threshold in buckets)`` when active for ``message``, else ``None``."""
        own = message.optimizers.get(self.name)
        if own is None and "percent" not in self.defaults:
            return None
        merged = {**self.defaults, **(own or {})}
        threshold = round(float(merged.get("percent", 10)) * BUCKETS / 100)
        if threshold <= 0:
            return None
        salt = str(merged.get("salt", "herald"))
        key = salt if merged.get("level", "campaign") == "org" else f"{salt}:{message.campaign.id}"
        return key, min(threshold, BUCKETS)

    def validate(self, message: Message) -> list[Issue]:
        """``percent`` is a number from 0 to 100; ``level`` is campaign or org."""
        own = message.optimizers.get(self.name) or {}
        issues = []
        percent = own.get("percent", 10)
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            issues.append(Issue("percent", "invalid", f"percent is a number from 0 to 100, not {percent!r}"))
        if own.get("level", "campaign") not in ("campaign", "org"):
            issues.append(Issue("level", "invalid", "level is campaign or org"))
        return issues

    def active(self, message: Message) -> bool:
        """Whether the split applies to ``message``."""
        return self.config(message) is not None

    def apply(self, draft: DecisionDraft, ctx: EvaluationContext) -> None:
        """Hold control members back (or mark them, when the message sends to control)."""
        config = ctx.state.get(self.name, False)
        if config is False:
            config = ctx.state[self.name] = self.config(ctx.message)
        if config is None:
            return
        key, threshold = config
        b = bucket(key, draft.customer.id)
        if b >= threshold:
            return
        if ctx.message.delivery.send_to_control:
            draft.note(self.name, "control_member_sent", bucket=b, threshold=threshold)
        else:
            draft.exclude("control_group", self.name, bucket=b, threshold=threshold)

    def columnar(self, frame: pl.LazyFrame, ctx: ColumnarContext) -> pl.LazyFrame:
        """The same split over a polars frame (``customer.id`` hashed row by row with SHA-256)."""
        import polars as pl

        config = self.config(ctx.message)
        if config is None or ctx.message.delivery.send_to_control:
            return frame
        key, threshold = config
        control = pl.col("customer.id").map_elements(lambda cid: bucket(key, cid) < threshold,
                                                     return_dtype=pl.Boolean)
        return ctx.exclude_where(frame, control, pl.lit("control_group"))


@hookimpl
def register_optimizers(register, settings):
    """Register the control group step (plugin settings: an org-wide ``percent``, ``level``, ``salt``)."""
    register(ControlGroup(settings))
