"""A malformed handle or a DND flag costs the customer one channel, not the whole row: the trace says which
channel and why (``invalid`` with the reason, ``dnd``), and the bulk plan decides exactly as the pipeline."""

from __future__ import annotations

from engine.audience import read_audience
from engine.columnar import read_frame
from engine.columnar.bulk import BulkStrategy
from engine.pipeline import Pipeline

from ..conftest import AT, EXAMPLES

ROWS = """id,tier,timezone,last_purchase_date,phone,email,dnd,subscription.sms,subscription.email
c1,gold,Asia/Kolkata,2026-05-01,+1555,asha@example.com,false,subscribed,subscribed
c2,gold,Asia/Kolkata,2026-05-01,+919881924865,asha@example,false,subscribed,subscribed
c3,gold,Asia/Kolkata,2026-05-01,+919881924865,asha@example.com,true,subscribed,subscribed
c4,gold,Asia/Kolkata,2026-05-01,0812345678,asha@,false,subscribed,subscribed
c5,gold,Asia/Kolkata,2026-05-01,+919881924865,asha@example.com,false,,
"""


def drops(decision):
    return {s.detail["channel"]: (s.detail["why"], s.detail.get("reason")) for s in decision.trace
            if s.event == "channel_dropped"}


def test_a_malformed_handle_drops_only_that_channel_with_the_reason(herald, tmp_path):
    path = tmp_path / "audience.csv"
    path.write_text(ROWS)
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    customers = read_audience(path, herald.catalogue).customers
    assert [c.id for c in customers] == ["c1", "c2", "c3", "c4", "c5"]  # nobody is rejected
    got = {d.customer: d for d in Pipeline(msg, herald.registry, at=AT, explain=True).run(customers)}
    assert drops(got["c1"])["sms"] == ("invalid", "phone '+1555' is not a valid number")
    assert got["c1"].channel == "email"
    assert drops(got["c2"])["email"] == (
        "invalid", "email 'asha@example' is not a valid address: the domain 'example' has no dot")
    assert got["c2"].channel == "sms"
    assert drops(got["c3"])["sms"] == (
        "dnd", "on the do-not-disturb registry (customer.dnd) and the message does not send to DND")
    assert got["c4"].excluded_reason == "no_reachable_channel"
    assert drops(got["c4"]) == {
        "sms": ("invalid", "phone '0812345678' is not in international form (+ and country code)"),
        "email": ("invalid", "email 'asha@' is not a valid address: nothing after the @")}
    assert drops(got["c5"]) == {}


def test_bulk_decisions_equal_per_recipient_ones_on_marked_handles(herald, tmp_path):
    path = tmp_path / "audience.csv"
    path.write_text(ROWS)
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    want = [d.as_dict() for d in Pipeline(msg, herald.registry, at=AT, evaluator="reference")
            .run(read_audience(path, herald.catalogue).customers)]
    frame = read_frame(path, herald.catalogue, channels=herald.registry.channels).frame
    got = [d.as_dict() for d in BulkStrategy(msg, herald.registry, frame, at=AT, chunk=2, slow_reach=False).decisions()]
    keys = ("customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "send_at")
    assert [{k: d[k] for k in keys} for d in got] == [{k: d[k] for k in keys} for d in want]
    assert [d["channel"] for d in want] == ["email", "sms", "email", None, "sms"]
