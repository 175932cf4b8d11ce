"""The bulk plan gives the per-recipient pipeline's decisions (reference evaluator): on the example
message, and on generated messages × generated audiences (nulls, missing fields, DST time zones)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.audience import read_audience
from engine.columnar import complete, evaluate_frame, frame_from_customers, iter_decisions, read_frame
from engine.columnar.bulk import BulkStrategy
from engine.model import Campaign, Creative, Customer, Message, Schedule
from engine.rulefiles.ir import All, Always, AnyOf, Cmp, Not, Rule, Ruleset
from engine.run import PerRecipientStrategy, Run

from ..conftest import AT, EXAMPLES

KEYS = ("customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "incentive", "send_at",
        "rules_versions", "fired")


def per_recipient(message, registry, customers, at):
    run = Run(PerRecipientStrategy(message, registry, customers, at=at, evaluator="reference"), why="test")
    return [d.as_dict() for d in run], run.summary().as_dict()


def bulk(message, registry, frame, at):
    run = Run(BulkStrategy(message, registry, frame, at=at, chunk=7, slow_reach=True), why="test")
    return [d.as_dict() for d in run], run.summary().as_dict()


def test_example_message_equals_per_recipient(herald):
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    customers = read_audience(EXAMPLES / "audience.csv", herald.catalogue).customers
    frame = read_frame(EXAMPLES / "audience.csv", herald.catalogue, channels=herald.registry.channels).frame
    for at in (AT, datetime(2026, 7, 4, 20, 0, tzinfo=UTC), datetime(2026, 3, 29, 0, 30, tzinfo=UTC)):
        # a send in the past is refused: preview "send now" at that instant instead
        m = replace(msg, schedule=Schedule("immediate")) if at > msg.schedule.at else msg
        want, want_summary = per_recipient(m, herald.registry, customers, at)
        got, got_summary = bulk(m, herald.registry, frame, at)
        assert [{k: d[k] for k in KEYS} for d in got] == [{k: d[k] for k in KEYS} for d in want]
        assert got_summary == want_summary


def test_pipeline_picks_bulk_above_threshold(herald, monkeypatch):
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    customers = read_audience(EXAMPLES / "audience.csv", herald.catalogue).customers
    monkeypatch.setenv("HERALD_COLUMNAR_THRESHOLD", "50")
    big = herald.evaluate(msg, customers, at=AT)
    assert big.mode == ("per_recipient" if _unsupported(msg, herald.registry) else "bulk")
    assert herald.evaluate(msg, customers[:50], at=AT).mode == "per_recipient"
    assert herald.evaluate(msg, iter(customers), at=AT).mode == big.mode  # an iterator is read into a list
    assert herald.evaluate(msg, customers, at=AT, explain=True).mode == "per_recipient"
    assert herald.evaluate(msg, customers, at=AT, evaluator="reference").mode == "per_recipient"
    want, _ = per_recipient(msg, herald.registry, customers, AT)
    assert [d.as_dict() for d in big] == want


def _unsupported(msg, registry):
    from engine.columnar import unsupported

    return unsupported(msg, registry, slow_reach=False)


# --- generated messages and audiences ---------------------------------------------------------------

ZONES = [None, "UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Apia"]
TIERS = ["gold", "silver", "platinum", "bronze"]
TAGS = ["electronics", "fashion", "shoes", "toys"]
STATUS = [None, "subscribed", "unsubscribed", "hard_bounced", "soft_bounced", "weird"]
INSTANTS = [datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 3, 8, 6, 59, tzinfo=UTC),
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 7, 4, 13, 30, tzinfo=UTC)]
VARIANTS = ["default", "gold", "evening", "fashion"]
CHANNELS = ["sms", "email"]


@st.composite
def customers(draw):
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        attrs = {
            "tier": draw(st.sampled_from([None, *TIERS])),
            "points": draw(st.one_of(st.none(), st.integers(-10, 5000))),
            "lifetime_value": draw(st.one_of(st.none(), st.floats(0, 5000, allow_nan=False))),
            "affinities": draw(st.one_of(st.none(), st.lists(st.sampled_from(TAGS), max_size=3))),
            "last_purchase_date": draw(st.sampled_from([None, "2024-12-31", "2025-06-01"])),
            "timezone": draw(st.sampled_from(ZONES)),
            "phone": draw(st.sampled_from([None, "+919881924865", "+14155552671", "+1555", "0812345678"])),
            "email": draw(st.sampled_from([None, "a@example.com", "asha@example"])),
            "dnd": draw(st.sampled_from([None, True, False])),
            "blocked": draw(st.sampled_from([None, True, False])),
            "subscription.sms": draw(st.sampled_from(STATUS)),
            "subscription.email": draw(st.sampled_from(STATUS)),
        }
        for contact, malformed in (("phone", ("+1555", "0812345678")), ("email", ("asha@example",))):
            if attrs[contact] in malformed:  # as the audience readers mark it
                attrs[f"handle_error.{contact}"] = f"{contact} {attrs[contact]!r} is malformed"
        out.append(Customer(f"c{i}", {k: v for k, v in attrs.items() if v is not None}))
    return out


@st.composite
def comparison(draw):
    choice = draw(st.integers(0, 7))
    if choice == 0:
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "exists", "missing"]))
        many = op in ("in", "not_in")
        return Cmp("customer.tier", op, draw(st.sampled_from([("gold", "platinum"), ("silver", 1)] if many
                                                             else ["gold", True])))
    if choice == 1:
        op = draw(st.sampled_from(["lt", "gte", "between"]))
        return Cmp("customer.points", op, (0, 1000) if op == "between" else draw(st.sampled_from([100, 2.5])))
    if choice == 2:
        op = draw(st.sampled_from(["contains", "contains_any"]))
        return Cmp("customer.affinities", op, "shoes" if op == "contains" else ("fashion", "toys"))
    if choice == 3:
        return Cmp("time.local_hour", "between", tuple(sorted(draw(st.lists(st.integers(0, 23), min_size=2, max_size=2)))))
    if choice == 4:
        return Cmp("time.weekday", "in", tuple(draw(st.lists(st.sampled_from(["mon", "sat", "sun"]), min_size=1))))
    if choice == 5:
        return Cmp("customer.last_purchase_date", draw(st.sampled_from(["lt", "missing"])), "2025-01-01")
    if choice == 6:
        return Cmp("customer.lifetime_value", "gte", draw(st.sampled_from([1000, 2500.5])))
    return Cmp("time.date", "eq", draw(st.sampled_from(["2026-03-29", "2026-07-04"])))


conditions = st.recursive(comparison(), lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: All(tuple(xs))),
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))), inner.map(Not)), max_leaves=4)


@st.composite
def ruleset(draw, kind, then):
    n = draw(st.integers(1, 4))
    rules = [Rule(f"{kind}-{i}", i, draw(conditions), draw(then)) for i in range(n)]
    if draw(st.booleans()):
        rules.append(Rule(f"{kind}-always", 99, Always(), draw(then)))
    return Ruleset(f"gen-{kind}", kind, draw(st.sampled_from(["first", "collect"])), tuple(rules), "v1")


@st.composite
def messages(draw):
    thens = {
        "audience_filter": st.builds(lambda b: {"include": b}, st.booleans()),
        "eligibility": st.builds(lambda r: {"exclude": r}, st.sampled_from(["dormant", "fraud", ""])),
        "personalization": st.builds(lambda v: {"variant": v, "vars": {}}, st.sampled_from(VARIANTS)),
        "channel_priority": st.builds(lambda cs: {"channels": cs},
                                      st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2, unique=True)),
    }
    kinds = draw(st.lists(st.sampled_from(list(thens)), unique=True))
    rulesets = {k: draw(ruleset(k, thens[k])) for k in kinds}
    creatives = draw(st.lists(st.tuples(st.sampled_from(CHANNELS), st.sampled_from(VARIANTS)), min_size=1, unique=True))
    static = draw(st.lists(st.sampled_from(CHANNELS), unique=True))
    local = draw(st.sampled_from([None, "09:00", "02:30", "01:30"]))
    kind = draw(st.sampled_from(["immediate", "at"]))  # "at" after every instant: never in the past
    return Message(
        id="gen", title="generated", campaign=Campaign("c1"), rulesets=rulesets, channels=tuple(static),
        creatives=tuple(Creative(c, v, {}) for c, v in creatives),
        schedule=Schedule(kind, datetime(2026, 11, 1, 5, 30, tzinfo=UTC) if kind == "at" else None, local_time=local))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(messages(), customers(), st.sampled_from(INSTANTS))
def test_generated_messages_equal_per_recipient(registry, catalogue, message, people, at):
    want, want_summary = per_recipient(message, registry, people, at)
    frame = complete(frame_from_customers(people, catalogue.customer_types()), catalogue.customer_types(),
                     registry.channels)
    got, got_summary = bulk(message, registry, frame, at)
    assert got == want
    assert got_summary == want_summary
    out = evaluate_frame(frame, message, registry, at, slow_reach=True)
    assert [d.customer for d in iter_decisions(out, message)] == [c.id for c in people]
