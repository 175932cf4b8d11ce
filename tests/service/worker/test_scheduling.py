"""When sends happen: an ``at`` schedule waits for its instant; a recurring one runs at each occurrence and
re-resolves its audience; per-recipient local send times go out in time-zone waves (a later wave waits
durably, and cancelling the message stops it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from service.worker import durable, runs
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import approve, deliveries, send_runs, upload
from tests.service.worker.processes import wait_until


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def test_an_at_schedule_sends_nothing_before_its_instant(client, db_engine, org, worker):
    upload(client, org, "id,tier,phone\nc1,gold,+919800000001\nc2,silver,+919800000002\n")
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    m = approve(client, db_engine, org, schedule={"kind": "at", "at": iso(at)})
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None and run.at.replace(tzinfo=UTC) == at and run.status == "scheduled"
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=m and org.headers()))["status"] == "scheduled"
    assert deliveries(db_engine, run.id) == []  # not begun: the workflow waits in its queue until `at`
    assert durable.wait_for_run(run.id, timeout=60) == "sent"
    rows = deliveries(db_engine, run.id)
    assert len(rows) == 2 and all(r.sent_at is not None and r.sent_at.replace(tzinfo=UTC) >= at for r in rows)


def test_a_recurring_message_runs_at_each_occurrence_with_its_audience_of_that_moment(client, db_engine, org,
                                                                                     worker):
    upload(client, org, "id,tier,phone\nc1,gold,+919800000001\n")
    start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    m = approve(client, db_engine, org, schedule={"kind": "recurring", "at": iso(start),
                                                  "rrule": "FREQ=SECONDLY;INTERVAL=6;COUNT=2"})
    durable.schedule_once(worker)
    (first,) = send_runs(db_engine, m["id"])
    assert first.id is not None and durable.wait_for_run(first.id, timeout=60) == "sent"
    upload(client, org, "id,tier,phone\nc2,silver,+919800000002\n")  # joins before the second occurrence
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "scheduled"
    durable.schedule_once(worker)
    second = send_runs(db_engine, m["id"])[1]
    assert second.id is not None and second.at.replace(tzinfo=UTC) == start + timedelta(seconds=6)
    assert durable.wait_for_run(second.id, timeout=60) == "sent"
    assert [r.customer for r in deliveries(db_engine, first.id)] == ["c1"]
    assert [r.customer for r in deliveries(db_engine, second.id)] == ["c1", "c2"]
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "sent"  # no third


def test_local_send_times_go_out_in_time_zone_waves_and_a_cancel_stops_the_later_wave(client, db_engine, org,
                                                                                        worker):
    upload(client, org, "id,tier,phone,timezone\nlon,gold,+447911123456,Europe/London\n"
                        "kol,gold,+919800000001,Asia/Kolkata\n")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    london = now.astimezone(ZoneInfo("Europe/London")) - timedelta(minutes=30)  # passed half an hour ago there
    m = approve(client, db_engine, org, schedule={"kind": "immediate", "local_time": london.strftime("%H:%M")})
    # the run as of an hour ago: London's wave is due, Kolkata's wall time comes hours later
    (run_id,) = runs.schedule_approved(worker, at=now - timedelta(hours=1))
    durable.start_run(run_id)
    runs.mark_started(worker, run_id)
    wait_until(lambda: [r for r in deliveries(db_engine, run_id) if r.status == "sent"], 60, "London's wave")
    rows = {r.customer: r for r in deliveries(db_engine, run_id)}
    kolkata = rows["kol"]
    assert rows["lon"].status == "sent" and kolkata.status == "pending"
    assert kolkata.send_at is not None
    local = kolkata.send_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    assert local.strftime("%H:%M") == london.strftime("%H:%M") and local > datetime.now(UTC)
    assert ok(client.get(f"{API}/messages/{m['id']}", headers=org.headers()))["status"] == "sending"
    ok(client.post(f"{API}/messages/{m['id']}/cancel", json={"reason": "stop"}, headers=org.headers()))
    assert durable.wait_for_run(run_id, timeout=60) == "cancelled"
    rows = {r.customer: r for r in deliveries(db_engine, run_id)}
    assert rows["kol"].status == "cancelled" and rows["lon"].status == "sent"


def test_quiet_hours_defer_a_send_to_their_end_and_never_drop_it(client, db_engine, org, worker):
    upload(client, org, "id,tier,phone,timezone\nq1,gold,+447911123456,Europe/London\n")
    local = datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))
    start, end = (local - timedelta(hours=1)).strftime("%H:%M"), (local + timedelta(hours=2)).strftime("%H:%M")
    m = approve(client, db_engine, org, schedule={"kind": "immediate", "quiet_hours": [start, end]})
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    assert run.id is not None
    wait_until(lambda: deliveries(db_engine, run.id), 60, "the chunk to be decided")
    (row,) = deliveries(db_engine, run.id)
    assert row.status == "pending" and row.send_at is not None  # waiting, not excluded
    assert row.send_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") == end
    ok(client.post(f"{API}/messages/{m['id']}/cancel", json={"reason": "test over"}, headers=org.headers()))
    assert durable.wait_for_run(run.id, timeout=60) == "cancelled"
