"""The seeded benchmark workload: a 20-rule personalization ruleset, eligibility exclusions, a 4-channel
priority list with reachability, and a synthetic audience. Conditions are kept in a tiny neutral form
(``[(field, op, value), …]``, all must hold) so every peer engine gets the same rules in its own language."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import yaml

SEED = 20260704
AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
SEND_AT = datetime(2026, 7, 4, 14, 0, tzinfo=UTC)  # the message's send instant: what time.* describes
CHANNELS = ("push", "line", "viber", "wechat")
CONTACT = {"push": "push_token", "line": "line_id", "viber": "viber_id", "wechat": "wechat_openid"}
BLOCKED = ("unsubscribed", "hard_bounced", "contact_unavailable", "invalid")
TIERS = ("bronze", "silver", "gold", "platinum")
REGIONS = ("north", "south", "east", "west")
TAGS = ("electronics", "fashion", "shoes", "toys", "grocery", "books")
ZONES = ("UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney",
         "America/Los_Angeles", "Europe/Berlin")
STATUS = (None, None, None, "subscribed", "unsubscribed", "hard_bounced", "soft_bounced")
#: eligibility, first hit: (conditions, reason)
ELIGIBILITY = [([("fraud_score", "gte", 0.9)], "fraud_risk"), ([("last_purchase_date", "lt", "2025-01-01")], "dormant")]


def personalization(seed: int = SEED) -> list[tuple[list[tuple[str, str, object]], str]]:
    """19 seeded rules over customer fields and time.local_hour, then an always-true default: 20 rules."""
    rng = random.Random(seed)
    rules = []
    for i in range(19):
        atoms: list[tuple[str, str, object]] = []
        for kind in rng.sample(["tier", "region", "points", "ltv", "tag", "hour"], rng.randint(1, 3)):
            if kind == "tier":
                atoms.append(("tier", "in", tuple(rng.sample(TIERS, 2))))
            elif kind == "region":
                atoms.append(("region", "eq", rng.choice(REGIONS)))
            elif kind == "points":
                atoms.append(("points", "gte", rng.choice([500, 1000, 2500, 4000])))
            elif kind == "ltv":
                lo = rng.choice([0, 200, 800])
                atoms.append(("lifetime_value", "between", (lo, lo + rng.choice([300, 1500]))))
            elif kind == "tag":
                atoms.append(("affinities", "contains", rng.choice(TAGS)))
            else:
                lo = rng.randint(0, 20)
                atoms.append(("local_hour", "between", (lo, lo + rng.randint(1, 3))))
        rules.append((atoms, f"v{i:02d}"))
    rules.append(([], "generic"))
    return rules


def _cond(atoms):
    out = []
    for field, op, value in atoms:
        path = f"time.{field}" if field == "local_hour" else f"customer.{field}"
        out.append({"field": path, op: list(value) if isinstance(value, tuple) else value})
    return {"all": out} if out else {"always": True}


def write_files(folder: Path) -> Path:
    """Rule files, the field catalogue and the message file; returns the message file."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"customer": {"tier": {"type": "string"}, "region": {"type": "string"}, "points": {"type": "integer"},
                           "lifetime_value": {"type": "number"}, "affinities": {"type": "list"},
                           "last_purchase_date": {"type": "date"}, "fraud_score": {"type": "number"}}}
    (folder / "fields.yaml").write_text(yaml.safe_dump(fields))
    elig = {"ruleset": "bench-eligibility", "kind": "eligibility", "hit_policy": "first",
            "rules": [{"id": reason, "priority": 10 * (i + 1), "when": _cond(a), "then": {"exclude": reason}}
                      for i, (a, reason) in enumerate(ELIGIBILITY)]}
    pers = {"ruleset": "bench-personalization", "kind": "personalization", "hit_policy": "first",
            "rules": [{"id": f"rule{i:02d}", "priority": 10 * (i + 1), "when": _cond(a), "then": {"variant": v}}
                      for i, (a, v) in enumerate(personalization())]}
    (folder / "eligibility.yaml").write_text(yaml.safe_dump(elig, sort_keys=False))
    (folder / "personalization.yaml").write_text(yaml.safe_dump(pers, sort_keys=False))
    msg = {"message": {"id": "bench", "title": "Benchmark", "campaign": {"id": "bench"},
                       "strategy": ["personalization", "channel_priority"]},
           "rules": {"eligibility": "eligibility.yaml", "personalization": "personalization.yaml"},
           "channels": list(CHANNELS),
           "creatives": [
               {"channel": "push", "content": {"title": "Hi", "body": "Sale today"}},
               {"channel": "line", "content": {"messages": [{"type": "text", "text": "Sale today"}]}},
               {"channel": "viber", "content": {"text": "Sale today"}},
               {"channel": "wechat", "content": {"template_id": "sale_1", "data": {"first": {"value": "Sale"}}}}],
           "schedule": {"kind": "at", "at": SEND_AT.isoformat()},
           "delivery": {"senders": {"viber": {"name": "Herald"}}}}
    (folder / "bench.message.yaml").write_text(yaml.safe_dump(msg, sort_keys=False))
    return folder / "bench.message.yaml"


WORK = Path(__file__).resolve().parent / ".work"


def engine():
    """(Herald engine, Message) for the benchmark, from the files written to ``benchmarks/.work``."""
    from engine.runtime import Herald
    from plugins import DEFAULT_PLUGINS

    path = write_files(WORK)
    herald = Herald.build(DEFAULT_PLUGINS, fields_file=WORK / "fields.yaml", entry_points=False)
    return herald, herald.load_message(path)


def audience(n: int, seed: int = SEED) -> pl.DataFrame:
    """``n`` seeded customers as a raw audience table (column names without ``customer.``; lists as lists).
    Cached in ``benchmarks/.work`` (generating is not what is measured)."""
    cache = WORK / f"raw-{n}-{seed}.parquet"
    if cache.exists():
        return pl.read_parquet(cache)
    frame = _generate(n, seed)
    WORK.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(cache)
    return frame


def _generate(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)

    def maybe(p, v):
        return v if rng.random() < p else None

    rows = {k: [] for k in ("id", "tier", "region", "points", "lifetime_value", "affinities", "last_purchase_date",
                            "fraud_score", "timezone", "blocked", *CONTACT.values(),
                            *(f"subscription.{c}" for c in CHANNELS))}
    for i in range(n):
        rows["id"].append(f"c{i:07d}")
        rows["tier"].append(maybe(0.8, rng.choice(TIERS)))
        rows["region"].append(maybe(0.9, rng.choice(REGIONS)))
        rows["points"].append(maybe(0.9, rng.randint(0, 5000)))
        rows["lifetime_value"].append(maybe(0.9, round(rng.uniform(0, 3000), 2)))
        rows["affinities"].append(maybe(0.8, rng.sample(TAGS, rng.randint(0, 3))))
        rows["last_purchase_date"].append(maybe(0.95, f"20{rng.randint(24, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"))
        rows["fraud_score"].append(maybe(0.9, round(rng.random(), 3)))
        rows["timezone"].append(maybe(0.9, rng.choice(ZONES)))
        rows["blocked"].append(maybe(0.5, rng.random() < 0.02))
        rows["push_token"].append(maybe(0.5, f"tok_{i:012d}_{rng.randint(0, 9999):04d}"))
        rows["line_id"].append(maybe(0.4, "U" + f"{rng.getrandbits(128):032x}"))
        rows["viber_id"].append(maybe(0.3, f"vb{i}=="))
        rows["wechat_openid"].append(maybe(0.3, f"oWx{i:010d}"))
        for c in CHANNELS:
            rows[f"subscription.{c}"].append(rng.choice(STATUS))
    schema = {"points": pl.Int64, "lifetime_value": pl.Float64, "affinities": pl.List(pl.String),
              "fraud_score": pl.Float64, "blocked": pl.Boolean}
    return pl.DataFrame({k: pl.Series(k, v, dtype=schema.get(k, pl.String)) for k, v in rows.items()})
