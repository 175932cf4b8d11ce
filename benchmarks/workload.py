"""The seeded benchmark workloads: a 20-rule personalization ruleset, eligibility exclusions, a channel
priority list with reachability, and a synthetic audience. Conditions are kept in a tiny neutral form
(``[(field, op, value), …]``, all must hold) so every peer engine gets the same rules in its own language.

Two workloads, chosen by ``HERALD_BENCH_WORKLOAD`` (``run.py --workload``):

* ``current`` — push → line → viber → wechat, handles that need no parsing.
* ``realistic`` — sms → email → push, with a distinct phone number and e-mail address per customer: seven
  countries (IN, US, BR, ID, GB, DE, FR), mostly E.164 but also spaced/dashed international form, Indian
  national form (the SMS ``default_region`` is IN), digits without ``+``, malformed and missing numbers;
  addresses with upper-case domains, internationalized local parts, invalid and missing ones; subscription
  states per channel, DND flags, the countries' time zones. See :func:`_generate_realistic`.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import yaml

SEED = 20260704
AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)
SEND_AT = datetime(2026, 7, 4, 14, 0, tzinfo=UTC)  # the message's send instant: what time.* describes
NAME = os.environ.get("HERALD_BENCH_WORKLOAD", "current")
if NAME not in ("current", "realistic"):
    raise SystemExit(f"HERALD_BENCH_WORKLOAD is current or realistic, not {NAME!r}")
REALISTIC = NAME == "realistic"
CHANNELS = ("sms", "email", "push") if REALISTIC else ("push", "line", "viber", "wechat")
CONTACT = {"push": "push_token", "line": "line_id", "viber": "viber_id", "wechat": "wechat_openid",
           "sms": "phone", "email": "email"}
BLOCKED = ("unsubscribed", "hard_bounced", "contact_unavailable", "invalid")
#: plugin settings of the realistic workload (also written to ``settings.yaml`` for the CLI runs)
SETTINGS = {"plugins.channels.sms": {"default_region": "IN"},
            "plugins.channels.email": {"unsubscribe_secret": "bench-secret-0123456789"}} if REALISTIC else {}
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
           "creatives": [c for c in CREATIVES if c["channel"] in CHANNELS] if REALISTIC else [
               {"channel": "push", "content": {"title": "Hi", "body": "Sale today"}},
               {"channel": "line", "content": {"messages": [{"type": "text", "text": "Sale today"}]}},
               {"channel": "viber", "content": {"text": "Sale today"}},
               {"channel": "wechat", "content": {"template_id": "sale_1", "data": {"first": {"value": "Sale"}}}}],
           "schedule": {"kind": "at", "at": SEND_AT.isoformat()},
           "delivery": {"senders": {"viber": {"name": "Herald"}, "email": {"from": "offers@herald.example"}}}}
    (folder / "bench.message.yaml").write_text(yaml.safe_dump(msg, sort_keys=False))
    (folder / "settings.yaml").write_text(yaml.safe_dump({"plugins": SETTINGS}))
    return folder / "bench.message.yaml"


WORK = Path(__file__).resolve().parent / ".work" / NAME
#: the realistic workload's creatives (sms, email, push)
CREATIVES = [
    {"channel": "sms", "content": {"body": "Sale today: 20% off everything. {{ optout }}"}},
    {"channel": "email", "content": {"subject": "Sale today", "html": "<p>20% off everything today.</p>"
                                     "<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"}},
    {"channel": "push", "content": {"title": "Hi", "body": "Sale today"}}]


def engine():
    """(Herald engine, Message) for the benchmark, from the files written to ``benchmarks/.work``."""
    from engine.runtime import Herald
    from plugins import DEFAULT_PLUGINS

    path = write_files(WORK)
    herald = Herald.build(DEFAULT_PLUGINS, settings=SETTINGS, fields_file=WORK / "fields.yaml", entry_points=False)
    return herald, herald.load_message(path)


def audience(n: int, seed: int = SEED) -> pl.DataFrame:
    """``n`` seeded customers as a raw audience table (column names without ``customer.``; lists as lists).
    Cached in ``benchmarks/.work`` (generating is not what is measured)."""
    cache = WORK / f"raw-{n}-{seed}.parquet"
    if cache.exists():
        return pl.read_parquet(cache)
    frame = (_generate_realistic if REALISTIC else _generate)(n, seed)
    WORK.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(cache)
    return frame


def _generate(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)

    def maybe(p, v):
        return v if rng.random() < p else None

    rows = {k: [] for k in ("id", "tier", "region", "points", "lifetime_value", "affinities", "last_purchase_date",
                            "fraud_score", "timezone", "blocked", *(CONTACT[c] for c in CHANNELS),
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


#: (country, share of customers, calling code, time zones)
COUNTRIES = [("IN", 0.30, "91", ("Asia/Kolkata",)), ("US", 0.15, "1", ("America/New_York", "America/Los_Angeles")),
             ("BR", 0.15, "55", ("America/Sao_Paulo",)), ("ID", 0.12, "62", ("Asia/Jakarta",)),
             ("GB", 0.10, "44", ("Europe/London",)), ("DE", 0.10, "49", ("Europe/Berlin",)),
             ("FR", 0.08, "33", ("Europe/Paris",))]
STATUS_REALISTIC = (None, None, None, "subscribed", "subscribed", "unsubscribed", "hard_bounced", "soft_bounced",
                    "unable_to_verify")
FIRST = ("asha", "ravi", "maria", "joao", "siti", "budi", "emma", "oliver", "lena", "jonas", "chloe", "lucas",
         "priya", "ana", "john", "mia")
LAST = ("sharma", "patel", "silva", "santos", "wijaya", "smith", "jones", "muller", "schmidt", "martin", "bernard",
        "kumar", "costa", "lim", "brown", "garcia")
DOMAINS = ("gmail.com", "yahoo.co.in", "outlook.com", "hotmail.com", "web.de", "orange.fr", "uol.com.br",
           "yahoo.co.id", "icloud.com", "example-retail.com", "mail.example.org")


def _national_numbers(rng: random.Random):
    """Per country: (mobile, fixed-line) national significant numbers of phonenumbers' examples, whose last
    six digits the generator replaces (most such numbers stay valid; some do not, as in real data)."""
    import phonenumbers as pn

    out = {}
    for country, *_ in COUNTRIES:
        kinds = []
        for kind in (pn.PhoneNumberType.MOBILE, pn.PhoneNumberType.FIXED_LINE):
            ex = pn.example_number_for_type(country, kind)
            kinds.append(pn.national_significant_number(ex))
        out[country] = kinds
    return out


def _phone(rng: random.Random, i: int, country: str, cc: str, nsns) -> str | None:
    """One customer's phone number as a CRM would hold it: 75 % E.164, 10 % international with spaces or
    dashes, Indian customers 15 % in national form (``098123 45678``), 2 % digits without ``+``, 2 %
    malformed, 3 % missing."""
    r = rng.random()
    if r < 0.03:
        return None
    nsn = nsns[0] if rng.random() < 0.85 else nsns[1]
    nsn = nsn[:-6] + f"{(i * 7919 + rng.randrange(10)) % 1_000_000:06d}"
    if r < 0.05:
        return rng.choice(["12345", "+1555", "n/a", "0000000000", f"+{cc}{nsn}99", f"+{cc} {nsn[:3]}", "unknown"])
    if r < 0.07:
        return cc + nsn
    if country == "IN" and r < 0.22:
        return f"0{nsn[:5]} {nsn[5:]}"
    if r < 0.17:
        sep = rng.choice([" ", "-"])
        return f"+{cc}{sep}{nsn[:3]}{sep}{nsn[3:6]}{sep}{nsn[6:]}"
    return f"+{cc}{nsn}"


def _email(rng: random.Random, i: int) -> str | None:
    """One customer's address: 5 % missing, 2 % invalid, 1 % internationalized local part, 3 % upper-case
    domain, the rest plain ``first.last<i>@domain``."""
    r = rng.random()
    first, last, domain = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
    if r < 0.05:
        return None
    if r < 0.07:
        return rng.choice([f"{first}.{last}{i}", f"{first}..{last}{i}@{domain}", f"{first} {last}{i}@{domain}",
                           f"{first}{i}@{domain.split('.')[0]}", f".{first}{i}@{domain}", f"{first}{i}@@{domain}"])
    if r < 0.08:
        return f"{first}.jürgen{i}@{domain}"
    if r < 0.11:
        return f"{first.title()}.{last.title()}{i}@{domain.upper()}"
    return f"{first}.{last}{i}@{domain}"


def _generate_realistic(n: int, seed: int) -> pl.DataFrame:
    """``n`` customers of the realistic workload (see the module doc): the current workload's attributes and
    rules, and the contact data and states of SMS, e-mail and push."""
    rng = random.Random(seed)
    nsns = _national_numbers(rng)

    def maybe(p, v):
        return v if rng.random() < p else None

    cum, total = [], 0.0
    for c in COUNTRIES:
        total += c[1]
        cum.append((total, c))
    rows = {k: [] for k in ("id", "tier", "region", "points", "lifetime_value", "affinities", "last_purchase_date",
                            "fraud_score", "timezone", "blocked", "dnd", "phone", "email", "push_token",
                            *(f"subscription.{c}" for c in CHANNELS))}
    for i in range(n):
        pick = rng.random()
        country, _, cc, zones = next(c for limit, c in cum if pick <= limit or limit == total)
        rows["id"].append(f"c{i:07d}")
        rows["tier"].append(maybe(0.8, rng.choice(TIERS)))
        rows["region"].append(maybe(0.9, rng.choice(REGIONS)))
        rows["points"].append(maybe(0.9, rng.randint(0, 5000)))
        rows["lifetime_value"].append(maybe(0.9, round(rng.uniform(0, 3000), 2)))
        rows["affinities"].append(maybe(0.8, rng.sample(TAGS, rng.randint(0, 3))))
        rows["last_purchase_date"].append(maybe(0.95, f"20{rng.randint(24, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"))
        rows["fraud_score"].append(maybe(0.9, round(rng.random(), 3)))
        rows["timezone"].append(maybe(0.95, rng.choice(zones)))
        rows["blocked"].append(maybe(0.5, rng.random() < 0.02))
        rows["dnd"].append(maybe(0.7, rng.random() < 0.1))
        rows["phone"].append(_phone(rng, i, country, cc, nsns[country]))
        rows["email"].append(_email(rng, i))
        rows["push_token"].append(maybe(0.35, f"tok_{i:012d}_{rng.randint(0, 9999):04d}"))
        for c in CHANNELS:
            rows[f"subscription.{c}"].append(rng.choice(STATUS_REALISTIC))
    schema = {"points": pl.Int64, "lifetime_value": pl.Float64, "affinities": pl.List(pl.String),
              "fraud_score": pl.Float64, "blocked": pl.Boolean, "dnd": pl.Boolean}
    return pl.DataFrame({k: pl.Series(k, v, dtype=schema.get(k, pl.String)) for k, v in rows.items()})


def reader_frame(n: int, herald) -> pl.DataFrame:
    """The realistic audience as Herald's audience reader makes it (``customer.*`` columns, phones and
    addresses normalised, ``handle_error.*`` / ``handle_type.*`` set): the input of the timed plan and of the
    hand chain. Cached (reading is measured end to end, not here)."""
    cache = WORK / f"reader-{n}.parquet"
    if cache.exists():
        return pl.read_parquet(cache)
    from engine.columnar import read_frame

    source = WORK / f"audience-{n}.parquet"
    audience(n).write_parquet(source)
    frame = read_frame(source, herald.catalogue, channels=herald.registry.channels).frame
    frame.write_parquet(cache)
    return frame


def channel_checks(channel: str) -> list[tuple[str, str, tuple]]:
    """What "reachable" means for ``channel``, as neutral conditions (op, column, values) over the reader's
    columns, for the peers: the handle present, the recorded status not blocking, and in the realistic
    workload the reader's verdict on the handle (no ``handle_error``), a number SMS can reach
    (``handle_type.phone``) and not on the DND registry."""
    contact = CONTACT[channel]
    out = [("present", contact, ()), ("not_in", f"subscription.{channel}", BLOCKED)]
    if channel in ("sms", "email"):
        out.append(("null", f"handle_error.{contact}", ()))
    if channel == "sms":
        from engine.phones import SMS_TYPE_NAMES

        out += [("in", "handle_type.phone", SMS_TYPE_NAMES), ("not_true", "dnd", ())]
    return out


def row_reachable(row: dict, channel: str) -> bool:
    """:func:`channel_checks` on one row (a dict keyed by the column names without ``customer.``)."""
    for op, column, values in channel_checks(channel):
        v = row.get(column)
        if (op == "present" and v is None or op == "null" and v is not None or op == "not_in" and v in values
                or op == "in" and v not in values or op == "not_true" and v is True):
            return False
    return True


def peer_audience(n: int, herald) -> pl.DataFrame:
    """The audience every engine of ``bench_one`` starts from, column names without ``customer.``: the raw
    table (current workload), or what the audience reader made of it (realistic: normalised handles)."""
    if not REALISTIC:
        return audience(n)
    frame = reader_frame(n, herald)
    return frame.rename({c: c.removeprefix("customer.") for c in frame.columns})
