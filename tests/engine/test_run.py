"""One way in: ``Herald.evaluate`` chooses the execution mode in one place, refuses a mode that cannot serve
the options, and both modes give the same decisions, frame, NDJSON bytes and summary."""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from engine import IncentiveSpec
from engine.columnar import frame_from_customers, read_frame
from engine.columnar.bulk import BulkStrategy
from engine.decision_frame import decision_line
from engine.errors import EngineError, ModeError
from engine.model import Customer
from engine.run import PerRecipientStrategy, Run, choose_mode
from service.cli import app

from ..conftest import AT, EXAMPLES

MESSAGE = EXAMPLES / "summer-sale.message.yaml"
ZONES = ["", "UTC", "Asia/Kolkata", "Asia/Tokyo", "Europe/London", "America/New_York", "Pacific/Apia"]
TIERS = ["", "bronze", "silver", "gold", "platinum"]
STATUSES = ["", "subscribed", "unsubscribed", "hard_bounced"]
#: a customer the sample message sends an SMS to
BUYER = {"tier": "gold", "timezone": "Asia/Kolkata", "last_purchase_date": "2026-05-01", "fraud_score": 0.1,
         "lifetime_value": 50.0}


@pytest.fixture
def sample(herald):
    return herald.load_message(MESSAGE)


def generated_audience(path, n, seed=8):
    """A CSV audience with every kind of value the sample rules test, blanks included."""
    rnd = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "first_name", "tier", "region", "timezone", "phone", "email", "affinities",
                    "lifetime_value", "last_purchase_date", "fraud_score", "dnd", "subscription.sms",
                    "subscription.email"])
        for i in range(n):
            w.writerow([f"g{i:05d}", rnd.choice(["Ana", "", "Zoë"]), rnd.choice(TIERS),
                        rnd.choice(["north", "west", ""]), rnd.choice(ZONES),
                        rnd.choice([f"+9198{rnd.randrange(10**8):08d}", "", "+1555"]),
                        rnd.choice([f"u{i}@example.com", "", "bad@"]),
                        rnd.choice(["", "fashion", "electronics|toys"]), rnd.choice(["", "12.5", "2500", "900.25"]),
                        rnd.choice(["", "2026-01-14", "2026-06-30"]), rnd.choice(["", "0.01", "0.9"]),
                        rnd.choice(["", "true", "false"]), rnd.choice(STATUSES), rnd.choice(STATUSES)])
    return path


def both(message, registry, frame, **options):
    """(per-recipient run, bulk run) over the same frame; the bulk one in small chunks."""
    return (Run(PerRecipientStrategy(message, registry, frame, at=AT, **options), why="test"),
            Run(BulkStrategy(message, registry, frame, at=AT, chunk=37), why="test"))


# --- choosing the mode ------------------------------------------------------------------------------------


def test_auto_picks_bulk_above_the_threshold_and_per_recipient_at_or_below(herald, sample, monkeypatch):
    frame = read_frame(EXAMPLES / "audience.csv", herald.catalogue, channels=herald.registry.channels).frame
    monkeypatch.setenv("HERALD_COLUMNAR_THRESHOLD", "199")
    run = herald.evaluate(sample, frame, at=AT)
    assert run.mode == "bulk" and "above the bulk threshold 199" in run.why
    monkeypatch.setenv("HERALD_COLUMNAR_THRESHOLD", "200")
    run = herald.evaluate(sample, frame, at=AT)
    assert run.mode == "per_recipient" and "not above the bulk threshold 200" in run.why


def test_auto_stays_per_recipient_when_the_options_or_the_evaluator_need_it(herald, sample, monkeypatch):
    frame = read_frame(EXAMPLES / "audience.csv", herald.catalogue, channels=herald.registry.channels).frame
    monkeypatch.setenv("HERALD_COLUMNAR_THRESHOLD", "0")
    assert herald.evaluate(sample, frame, at=AT, explain=True).mode == "per_recipient"
    assert herald.evaluate(sample, frame, at=AT, render=True).mode == "per_recipient"
    run = herald.evaluate(sample, frame, at=AT, evaluator="reference")
    assert run.mode == "per_recipient" and "reference evaluator has no bulk form" in run.why


@pytest.mark.parametrize("options, why", [
    ({"mode": "bulk", "explain": True}, "bulk mode cannot serve this run: a trace or rendering was asked for"),
    ({"mode": "bulk", "render": True}, "bulk mode cannot serve this run: a trace or rendering was asked for"),
    ({"mode": "bulk", "preview": False}, "bulk mode cannot serve this run: not a preview"),
    ({"mode": "bulk", "evaluator": "reference"}, "bulk mode cannot run the reference evaluator"),
    ({"mode": "bulk", "evaluator": "durable"}, "bulk mode cannot run the durable evaluator"),
    ({"evaluator": "columnar", "explain": True}, "the columnar evaluator (bulk mode only) cannot serve this run"),
    ({"mode": "per_recipient", "evaluator": "columnar"}, "the columnar evaluator runs only in bulk mode"),
    ({"mode": "fast"}, "unknown mode 'fast'"),
])
def test_an_explicit_mode_that_cannot_serve_the_options_is_an_error_never_a_switch(herald, sample, options, why):
    customers = [Customer("a", {"phone": "+919818427393"})]
    with pytest.raises(ModeError, match=re.escape(why)):
        herald.evaluate(sample, customers, at=AT, **options)


def test_the_columnar_evaluator_means_bulk_whatever_the_size(herald, sample):
    run = herald.evaluate(sample, [Customer("a", {**BUYER, "phone": "+919818427393"})], at=AT, evaluator="columnar")
    assert run.mode == "bulk"
    assert [d.channel for d in run] == ["sms"]


def test_choose_mode_asks_the_bulk_plan_only_when_bulk_is_considered():
    asked = []

    def why_not():
        asked.append(1)
        return None

    assert choose_mode("auto", evaluator="compiled", evaluator_modes=("per_recipient", "bulk"), size=5,
                       why_not_bulk=why_not, limit=10)[0] == "per_recipient"
    assert choose_mode("per_recipient", evaluator="compiled", evaluator_modes=("per_recipient", "bulk"), size=50,
                       why_not_bulk=why_not, limit=10)[0] == "per_recipient"
    assert not asked
    assert choose_mode("auto", evaluator="compiled", evaluator_modes=("per_recipient", "bulk"), size=50,
                       why_not_bulk=why_not, limit=10)[0] == "bulk"
    assert asked == [1]
    assert choose_mode("auto", evaluator="compiled", evaluator_modes=("per_recipient", "bulk"), size=50,
                       why_not_bulk=lambda: "no columnar step", limit=10) == (
        "per_recipient", "the bulk plan cannot serve this run: no columnar step")


def test_customers_of_mixed_types_cannot_be_forced_into_bulk(herald, sample):
    people = [Customer("a", {"tier": "gold"}), Customer("b", {"tier": 3})]
    with pytest.raises(ModeError, match="the audience cannot be read as columns"):
        herald.evaluate(sample, people, at=AT, mode="bulk")
    assert herald.evaluate(sample, people, at=AT).mode == "per_recipient"


# --- the same run in both modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("audience", ["sample", "generated"])
def test_both_modes_give_the_same_decisions_frame_ndjson_and_summary(herald, sample, tmp_path, audience):
    path = EXAMPLES / "audience.csv" if audience == "sample" else generated_audience(tmp_path / "g.csv", 400)
    frame = read_frame(path, herald.catalogue, channels=herald.registry.channels).frame
    one, many = both(sample, herald.registry, frame)
    want = [d.as_dict() for d in one]
    assert [d.as_dict() for d in many] == want
    assert many.summary().as_dict() == one.summary().as_dict()
    assert one.summary().total == frame.height and one.summary().included > 0 and one.summary().excluded
    one, many = both(sample, herald.registry, frame)
    assert many.frame().equals(one.frame())
    one, many = both(sample, herald.registry, frame)
    text = "".join(one.ndjson())
    assert "".join(many.ndjson(batch=50)) == text
    assert [json.loads(line) for line in text.splitlines()] == want


def test_ndjson_is_byte_identical_for_hostile_text_and_refused_incentives(herald, sample):
    ids = ['q"uote', "back\\slash", "tab\there", "nl\nx", "\x01ctl", "del\x7f", "c1\x85", "bidi\u202eevil",
           "ls\u2028x", "zoë 東京 🎉", "plain"]
    people = [Customer(i, {**BUYER, "phone": f"+9198184273{n:02d}"})
              for n, i in enumerate(ids)]
    capped = replace(sample, incentive=IncentiveSpec("coupon", {"source": "generated", "length": 8, "cap": 4,
                                                                "expiry": {"days": 14}}))
    frame = frame_from_customers(people)
    one, many = both(capped, herald.registry, frame)
    per_line = [decision_line(d) for d in one.decisions()]
    text = "".join(many.ndjson())
    assert text == "\n".join(per_line) + "\n"
    one, many = both(capped, herald.registry, frame)
    assert "".join(many.ndjson(batch=1)) == text  # batches with nothing to escape take the plain form
    assert "\x7f" not in text and "\u202e" not in text and "\\u202e" in text
    decisions = [json.loads(line) for line in text.splitlines()]
    assert [d["customer"] for d in decisions] == ids
    assert "incentive_unavailable" in [d["excluded_reason"] for d in decisions]
    assert sum(d["incentive"] is not None for d in decisions) == 4


def test_a_run_is_read_once_and_its_summary_needs_every_decision(herald, sample):
    people = [Customer("a", {"phone": "+919818427393"}), Customer("b", {"phone": "+919818427394"})]
    run = herald.evaluate(sample, people, at=AT)
    assert run.summary().total == 2  # decided for the summary alone
    with pytest.raises(EngineError, match="read once"):
        list(run)
    run = herald.evaluate(sample, people, at=AT)
    next(iter(run))
    with pytest.raises(EngineError, match="read the run to its end"):
        run.summary()


# --- the command line -------------------------------------------------------------------------------------

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, ["evaluate", "-m", str(MESSAGE), "-a", str(EXAMPLES / "audience.csv"),
                               "--at", "2026-07-04T13:30:00+00:00", *args], catch_exceptions=False)


def test_cli_modes_write_the_same_ndjson_and_summary():
    per = cli("--mode", "per-recipient", "--format", "ndjson")
    bulk = cli("--mode", "bulk", "--format", "ndjson")
    assert per.exit_code == 0 and bulk.exit_code == 0, per.output + bulk.output
    assert per.stdout == bulk.stdout
    assert len(per.stdout.splitlines()) == 201
    summary = cli("--mode", "bulk", "--summary", "--format", "json")
    assert json.loads(summary.stdout)["summary"] == json.loads(per.stdout.splitlines()[-1])["summary"]


@pytest.mark.parametrize("args, why", [
    (("--evaluator", "columnar", "--explain"), "the columnar evaluator (bulk mode only) cannot serve this run"),
    (("--mode", "bulk", "--explain"), "bulk mode cannot serve this run: a trace or rendering was asked for"),
    (("--mode", "bulk", "--evaluator", "reference"), "bulk mode cannot run the reference evaluator"),
    (("--mode", "per-recipient", "--evaluator", "columnar"), "the columnar evaluator runs only in bulk mode"),
])
def test_cli_refuses_a_mode_that_cannot_serve_the_options(args, why):
    result = cli(*args, "--format", "ndjson")
    assert result.exit_code == 2 and result.stdout == ""
    assert why in result.stderr and "Traceback" not in result.output


def test_cli_help_names_evaluator_and_mode_apart():
    result = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"})
    assert "--mode <auto|per-recipient|bulk>" in result.stdout
    assert "execution mode" in result.stdout and "rule evaluator" in result.stdout


@pytest.mark.parametrize("mode", ["per_recipient", "bulk"])
def test_an_unknown_default_time_zone_is_an_error_not_utc(herald, sample, mode):
    customers = [Customer("a", {**BUYER, "timezone": None, "phone": "+919881924865", "subscription.sms": "subscribed"})]
    with pytest.raises(ModeError, match="default_tz 'Asia/Kolkatta' is not an IANA time zone"):
        list(herald.evaluate(sample, customers, at=AT, mode=mode, default_tz="Asia/Kolkatta"))
    decided = list(herald.evaluate(sample, customers, at=AT, mode=mode, default_tz="Asia/Kolkata"))
    assert decided[0].channel == "sms" and decided[0].send_at is not None


# --- a Prepared message decides each recipient as a one-recipient run --------------------------------------

LISTED = {"source": "list", "codes": ["LIST-A1", "LIST-B2"], "expiry": {"days": 14}}


def test_prepared_decides_each_customer_as_a_one_recipient_evaluate(herald, sample):
    """Several different customers decided through one Prepared (a coupon list of 2 codes, previewed): each
    gets what evaluate of that customer alone gives, the third and fourth included: no preview tally is
    carried from one call to the next."""
    listed = replace(sample, incentive=IncentiveSpec("coupon", LISTED))
    people = [Customer(f"p{n}", {**BUYER, "phone": f"+91981842730{n}"}) for n in range(4)]
    prepared = herald.prepare(listed, at=AT)
    got = [prepared.decide(c) for c in [*people, people[0]]]
    alone = [next(iter(herald.evaluate(listed, [c], at=AT, mode="per_recipient"))) for c in [*people, people[0]]]
    assert got == alone
    assert all(d.included and d.incentive is not None and d.incentive["preview"] for d in got), \
        [d.excluded_reason for d in got]
    # a run of all four together still refuses the recipients beyond the two codes
    together = list(herald.evaluate(listed, people, at=AT, mode="per_recipient"))
    assert [d.excluded_reason for d in together] == [None, None, "incentive_unavailable", "incentive_unavailable"]
