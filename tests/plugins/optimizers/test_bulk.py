"""The optimizers' columnar steps inside the real bulk plan equal the per-recipient pipeline."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from engine import Schedule
from engine.audience import read_audience
from engine.columnar import read_frame, unsupported
from engine.columnar.bulk import BulkStrategy
from engine.pipeline import Pipeline
from tests.conftest import AT, EXAMPLES

KEYS = ("customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "incentive", "send_at")
COST = {"value": 40.0, "channels": {"sms": {"cost": 0.05, "conversion_rate": 0.001},
                                    "email": {"cost": 0.001, "conversion_rate": 0.002}}}


@pytest.fixture
def example(herald):
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    customers = read_audience(EXAMPLES / "audience.csv", herald.catalogue).customers
    frame = read_frame(EXAMPLES / "audience.csv", herald.catalogue, channels=herald.registry.channels).frame
    return msg, customers, frame


INSTANTS = [AT, datetime(2026, 7, 4, 20, 0, tzinfo=UTC), datetime(2026, 3, 29, 0, 30, tzinfo=UTC)]


def both(herald, msg, customers, frame, at):
    if msg.schedule.at is not None and at > msg.schedule.at:  # a send in the past is refused: send now instead
        msg = replace(msg, schedule=Schedule("immediate"))
    assert unsupported(msg, herald.registry, slow_reach=True) is None
    want = [d.as_dict() for d in Pipeline(msg, herald.registry, at=at, evaluator="reference").run(customers)]
    got = [d.as_dict() for d in BulkStrategy(msg, herald.registry, frame, at=at, chunk=17, slow_reach=True).decisions()]
    assert [{k: d[k] for k in KEYS} for d in got] == [{k: d[k] for k in KEYS} for d in want]
    return want


@pytest.mark.parametrize("at", INSTANTS)
def test_control_group_and_cost_in_bulk_equal_per_recipient(herald, example, at):
    msg, customers, frame = example
    msg = replace(msg, optimizers={"control_group": {"percent": 20}, "cost": COST})
    want = both(herald, msg, customers, frame, at)
    assert any(d["excluded_reason"] == "control_group" for d in want)
    assert any(d["channel"] == "email" and d["fallbacks"] == ["sms"] for d in want)  # cost put email first


@pytest.mark.parametrize("at", INSTANTS[2:])
def test_quiet_hours_in_bulk_equal_per_recipient(herald, example, at):
    msg, customers, frame = example
    msg = replace(msg, schedule=Schedule("immediate", quiet_hours=("21:00", "09:00")),
                  campaign=replace(msg.campaign, starts=None))  # sent "now": the DST instants precede June
    want = both(herald, msg, customers, frame, at)
    assert any(d["send_at"] != at.isoformat() for d in want if d["included"])


def test_an_active_frequency_cap_keeps_the_per_recipient_path(herald, example):
    msg = replace(example[0], optimizers={"frequency_cap": {"limits": [{"period": "week", "max": 2}]}})
    assert unsupported(msg, herald.registry, slow_reach=True) == "optimizer frequency_cap has no columnar step"
    assert unsupported(example[0], herald.registry, slow_reach=True) is None  # inactive: no obstacle
