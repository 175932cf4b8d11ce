"""Coupons: a coupon series per message; previews show a deterministic sample code and reserve nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from engine import Customer, EvaluationContext, Issue, Message, hookimpl

UNAMBIGUOUS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
DIGITS = "0123456789"


class Coupon:
    """Settings: ``source`` (generated | list | common), ``length``, ``alphabet`` (alphanumeric | numeric),
    ``codes`` (list), ``code`` (common), ``expiry`` ({date} | {days} | {with_campaign: true}), ``cap``."""

    kind = "coupon"
    tags = ("coupon.code", "coupon.expires_on")
    spec_schema: Mapping[str, Any] = {"type": "object"}

    def validate(self, spec: Mapping[str, Any], message: Message) -> list[Issue]:
        """Check the series settings."""
        issues = []
        source = spec.get("source", "generated")
        if source not in ("generated", "list", "common"):
            return [Issue("source", "invalid", "source is generated, list or common")]
        if source == "generated":
            length = spec.get("length", 8)
            if not isinstance(length, int) or not 4 <= length <= 32:
                issues.append(Issue("length", "invalid", "length is a whole number from 4 to 32"))
        if source == "list" and not spec.get("codes"):
            issues.append(Issue("codes", "required", "an uploaded list needs codes"))
        if source == "common" and not spec.get("code"):
            issues.append(Issue("code", "required", "a common code needs the code"))
        return issues

    def reserve(self, spec: Mapping[str, Any], customer: Customer, ctx: EvaluationContext) -> Mapping[str, Any]:
        """A code and its expiry for this customer (a preview: derived from the ids, nothing taken)."""
        source = spec.get("source", "generated")
        if source == "common":
            code = spec["code"]
        elif source == "list":
            codes = spec["codes"]
            code = codes[_index(ctx.message.id, customer.id, len(codes))]
        else:
            alphabet = DIGITS if spec.get("alphabet") == "numeric" else UNAMBIGUOUS
            digest = hashlib.sha256(f"{ctx.message.id}:{customer.id}".encode()).digest()
            code = "".join(alphabet[b % len(alphabet)] for b in digest[: spec.get("length", 8)])
        return {"code": code, "expires_on": _expiry(spec, ctx).isoformat() if _expiry(spec, ctx) else None,
                "preview": ctx.preview}

    def release(self, spec: Mapping[str, Any], grant: Mapping[str, Any]) -> None:
        """Previews hold nothing to release."""


def _index(message_id: str, customer_id: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{message_id}:{customer_id}".encode()).digest()[:8], "big") % n


def _expiry(spec: Mapping[str, Any], ctx: EvaluationContext) -> date | None:
    expiry = spec.get("expiry") or {}
    if "date" in expiry:
        return date.fromisoformat(str(expiry["date"]))
    if "days" in expiry:
        return ctx.at.date() + timedelta(days=int(expiry["days"]))
    if expiry.get("with_campaign"):
        return ctx.message.campaign.ends
    return None


@hookimpl
def register_incentives(register):
    """Register the coupon incentive type."""
    register(Coupon())
