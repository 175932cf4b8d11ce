"""``herald runs watch RUN`` on the test database: it follows a send under way until the run ends (exit 0 when
sent, 1 when cancelled), ``--once`` prints one snapshot with the counts per status, and an unknown run or a dry
run is a clear error (exit 2) naming it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from service.cli import app as cli_app
from service.worker import durable, runs
from tests.service.test_messages_support import API, insert_dry_run, ok, ready_message
from tests.service.worker.conftest import approve, customers_csv, deliveries, send_runs, upload
from tests.service.worker.processes import wait_until


def watch(database_url: str, *args: str):
    return CliRunner().invoke(cli_app, ["runs", "watch", *args, "--database", database_url, "--every", "0.1"])


def test_watch_follows_a_send_until_it_ends_then_once_shows_the_finished_run(client, db_engine, database_url,
                                                                              org, worker):
    upload(client, org, customers_csv(23, prefix="w"))
    m = approve(client, db_engine, org, title="Watched")
    assert durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    live = watch(database_url, str(run.id))  # started while the worker sends: returns when the run ends
    assert live.exit_code == 0, live.output
    assert f"run {run.id} (message {m['id']}): sent, 23/23 done (100%)" in live.stdout
    assert "sent 23" in live.stdout
    assert {r.status for r in deliveries(db_engine, run.id or 0)} == {"sent"}
    once = watch(database_url, str(run.id), "--once")
    assert once.exit_code == 0, once.output
    assert f"run {run.id} (message {m['id']}): sent, 23/23 done (100%)" in once.stdout
    assert re.search(r"^━{40}  sent 23\s*$", once.stdout, re.M)  # a full bar; all 23 sent, nothing else


def test_once_before_a_run_starts_shows_it_scheduled_with_nothing_done(client, db_engine, database_url, org,
                                                                       worker):
    upload(client, org, "id,tier,phone\nq1,gold,+919800000001\n")
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    m = approve(client, db_engine, org, schedule={"kind": "at", "at": at.isoformat()})
    durable.schedule_once(worker)
    (run,) = send_runs(db_engine, m["id"])
    once = watch(database_url, str(run.id), "--once")
    assert once.exit_code == 0, once.output
    assert f"run {run.id} (message {m['id']}): scheduled, 0/? done" in once.stdout and "sent 0" in once.stdout


def test_a_cancelled_run_ends_the_watch_with_status_1_and_its_counts(client, db_engine, database_url, org, worker):
    upload(client, org, "id,tier,phone,timezone\nlon,gold,+447911123456,Europe/London\n"
                        "kol,gold,+919800000001,Asia/Kolkata\n")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    london = now.astimezone(ZoneInfo("Europe/London")) - timedelta(minutes=30)
    m = approve(client, db_engine, org, schedule={"kind": "immediate", "local_time": london.strftime("%H:%M")})
    (run_id,) = runs.schedule_approved(worker, at=now - timedelta(hours=1))  # London's wave due, Kolkata's later
    durable.start_run(run_id)
    runs.mark_started(worker, run_id)
    wait_until(lambda: [r for r in deliveries(db_engine, run_id) if r.status == "sent"], 60, "London's wave")
    during = watch(database_url, str(run_id), "--once")
    assert f"run {run_id} (message {m['id']}): sending, 1/2 done (50%)" in during.stdout
    assert "sent 1 · pending 1" in during.stdout
    ok(client.post(f"{API}/messages/{m['id']}/cancel", json={"reason": "stop"}, headers=org.headers()))
    ended = watch(database_url, str(run_id))
    assert ended.exit_code == 1, ended.output
    assert f"run {run_id} (message {m['id']}): cancelled, 2/2 done (100%)" in ended.stdout
    assert "sent 1 · cancelled 1" in ended.stdout


def test_an_unknown_run_or_a_dry_run_is_an_error_naming_it(client, db_engine, database_url, org):
    missing = watch(database_url, "987654321")
    assert missing.exit_code == 2
    assert "no run 987654321 in this database" in missing.stderr and "Traceback" not in missing.output
    m = ready_message(client, db_engine, org, title="Dry")
    sub = ok(client.post(f"{API}/messages/{m['id']}/submit", headers=org.headers()))
    dry = insert_dry_run(db_engine, org, m["id"], sub["submitted_version"]["hash"])
    refused = watch(database_url, str(dry), "--once")
    assert refused.exit_code == 2 and f"run {dry} is a dry run, not a send" in refused.stderr


def test_a_database_without_herald_tables_is_refused_naming_migrate(tmp_path):
    empty = CliRunner().invoke(cli_app, ["runs", "watch", "1", "--database", f"sqlite:///{tmp_path / 'none.db'}"])
    assert empty.exit_code == 2 and "herald migrate" in empty.stderr
