"""Helpers for the channel tests: messages, recipients' render context, and the columnar reachability frame."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date
from typing import Any

import polars as pl

from engine import Campaign, Creative, Customer, DeliverySettings, Message
from engine.contracts import DecisionDraft
from engine.rendering import render_context
from engine.rulefiles.loader import load_ruleset_data
from plugins.optimizers.personalization import RULE_KIND as PERSONALIZATION

CAMPAIGN = Campaign("summer-2026", "Summer 2026", starts=date(2026, 6, 1), ends=date(2026, 12, 31))


def message(*creatives: Creative, senders: Mapping[str, Mapping[str, Any]] | None = None, **delivery: Any) -> Message:
    """A broadcast message with the given creatives and delivery settings."""
    return Message("summer-sale", "Summer sale", CAMPAIGN, creatives=creatives,
                   delivery=DeliverySettings(senders=senders or {}, **delivery))


def with_vars(msg: Message, **vars: Any) -> Message:
    """``msg`` with a personalization rule that sets ``vars`` (templates may read only vars a rule sets)."""
    rules = load_ruleset_data({"ruleset": "p", "kind": "personalization", "rules": [
        {"id": "all", "priority": 1, "when": {"always": True}, "then": {"variant": "default", "vars": vars}}]},
        kinds={"personalization": PERSONALIZATION})
    return replace(msg, strategy=("personalization",), rulesets={"personalization": rules})


def context(channel: Any, msg: Message, customer: Customer, **vars: Any) -> dict[str, Any]:
    """The Liquid context the pipeline gives ``channel.render`` for ``customer``."""
    draft = DecisionDraft(customer, {}, None, vars=dict(vars))
    return render_context(msg, draft, channel.name, channel.tags)


def codes(issues: Iterable[Any]) -> dict[str, str]:
    """path → code of every error (warnings left out)."""
    return {i.path: i.code for i in issues if i.is_error}


def frame(customers: Iterable[Customer], dtypes: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    """One row per customer, one column per fact path (``customer.phone`` …), missing values null."""
    customers = list(customers)
    keys = sorted({k for c in customers for k in c.attributes})
    schema = {f"customer.{k}": (dtypes or {}).get(k, pl.Boolean if k == "dnd" else pl.String) for k in keys}
    rows = [{f"customer.{k}": c.attributes.get(k) for k in keys} for c in customers]
    return pl.DataFrame(rows, schema={"customer.id": pl.String, **schema}).with_columns(
        pl.Series("customer.id", [c.id for c in customers], dtype=pl.String))


def columnar_statuses(channel: Any, msg: Message, customers: list[Customer]) -> list[str]:
    """``reachability_expr`` evaluated over the customers' frame (lazily, as the bulk path does)."""
    return frame(customers).lazy().select(channel.reachability_expr(msg).alias("s")).collect()["s"].to_list()


def row_statuses(channel: Any, msg: Message, customers: list[Customer]) -> list[str]:
    """``reachability`` per customer, as strings."""
    return [channel.reachability(c, msg).value for c in customers]
