"""Ad exports: a message on an ad channel writes its audience file — one per platform, each member's
SHA-256 identifiers once, hashed as the platform requires (Meta: phone digits without ``+``; Google: E.164 with
``+``; e-mail trimmed and lower-cased) — under the export directory; a crashed and re-run chunk writes no row
twice; the run's files are listed for its org only."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from sqlalchemy import update
from sqlmodel import col, func, select

from service.storage import ad_exports
from service.storage.db import transaction
from service.storage.tables import AdExportRow, Delivery
from service.worker import durable, runs, sending
from service.worker.ad_exports import AdExportTransport, write_run
from tests.service.test_messages_support import API, ok
from tests.service.worker.conftest import approve, deliveries, send_runs, upload


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def people_csv(n: int) -> str:
    """Customers with mixed-case, padded e-mails (normalised before hashing); one without any e-mail."""
    lines = ["id,tier,phone,email,timezone"]
    for i in range(n):
        email = "" if i == 0 else f"  Buyer.{i}@Example.COM "
        lines.append(f"a{i:03d},gold,+9198{i:08d},\"{email}\",Asia/Kolkata")
    return "\n".join(lines) + "\n"


def on_channel(client, org, channel):
    def edit(url):
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"strategy": ["personalization", "x_engage"], "version": lock},
                        headers=org.headers()))
        ok(client.post(f"{url}/creatives", json={"channel": channel, "content": {"audience_name": "Summer sale"}},
                       headers=org.headers()), 201)
        lock = ok(client.get(url, headers=org.headers()))["version"]
        ok(client.patch(url, json={"channels": [channel], "version": lock}, headers=org.headers()))
    return edit


def read(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_each_platform_gets_one_file_of_each_members_hashed_identifiers_once(client, app, db_engine, org, other_org,
                                                                                 fresh_worker, tmp_path, monkeypatch):
    monkeypatch.setattr(app.state, "db", replace(app.state.db, settings=replace(app.state.db.settings,
                                                                                  export_dir=tmp_path)))
    upload(client, org, people_csv(12))
    ads = AdExportTransport(db_engine, tmp_path)
    fresh_worker.transports = {"facebook": ads, "google": ads}
    meta = approve(client, db_engine, org, title="Meta", edit=on_channel(client, org, "facebook"))
    google = approve(client, db_engine, org, title="Google", edit=on_channel(client, org, "google"))
    durable.schedule_once(fresh_worker)
    (meta_run,) = send_runs(db_engine, meta["id"])
    (google_run,) = send_runs(db_engine, google["id"])
    assert meta_run.id is not None and google_run.id is not None
    assert durable.wait_for_run(meta_run.id, timeout=90) == "sent"
    assert durable.wait_for_run(google_run.id, timeout=90) == "sent"

    members = [d.customer for d in deliveries(db_engine, meta_run.id) if d.status == "sent"]
    assert len(members) == 12
    meta_file = tmp_path / str(org.org_id) / str(meta["id"]) / str(meta_run.id) / "facebook.csv"
    google_file = tmp_path / str(org.org_id) / str(google["id"]) / str(google_run.id) / "google.csv"
    assert sorted(p.name for p in tmp_path.rglob("*.csv")) == ["facebook.csv", "google.csv"]

    def expected(i: int, plus: str) -> str:
        email = "" if i == 0 else sha(f"buyer.{i}@example.com")
        return f"{email},{sha(f'{plus}9198{i:08d}')}"

    assert read(meta_file)[0] == "email,phone" and read(google_file)[0] == "Email,Phone"
    assert sorted(read(meta_file)[1:]) == sorted(expected(i, "") for i in range(12))
    assert sorted(read(google_file)[1:]) == sorted(expected(i, "+") for i in range(12))

    listed = ok(client.get(f"{API}/runs/{meta_run.id}/exports", headers=org.headers()))
    assert listed["items"] == [{"name": "facebook.csv", "channel": "facebook", "rows": 12,
                                "bytes": meta_file.stat().st_size}]
    assert client.get(f"{API}/runs/{meta_run.id}/exports", headers=other_org.headers()).status_code == 404
    got = client.get(f"{API}/runs/{meta_run.id}/exports/facebook.csv", headers=org.headers())
    assert got.status_code == 200 and got.content == meta_file.read_bytes()
    assert got.headers["content-type"].startswith("text/csv")
    assert f'filename="run-{meta_run.id}-facebook.csv"' in got.headers["content-disposition"]
    for bad in ("google.csv", "..%2F..%2Fetc%2Fpasswd", "facebook", "facebook.csv.tmp"):  # not this run's files
        missing = client.get(f"{API}/runs/{meta_run.id}/exports/{bad}", headers=org.headers())
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert client.get(f"{API}/runs/{meta_run.id}/exports/facebook.csv",
                      headers=other_org.headers()).status_code == 404

    # a worker crashed after the transport recorded the chunk, before the deliveries were: they are sent again
    before = meta_file.read_bytes()
    with transaction(db_engine) as s:
        s.execute(update(Delivery).where(col(Delivery.run_id) == meta_run.id)
                  .values(status="pending", provider_id=None, sent_at=None))
    resent = 0
    for chunk in (0, 1):  # 12 members in chunks of 10
        assert runs.prepare_chunk(fresh_worker, meta_run.id, chunk) == 0  # the delivery rows are there already
        for _, ids in sending.plan_pass(fresh_worker, meta_run.id, chunk).batches:
            assert sending.send_batch(fresh_worker, meta_run.id, ids, "test/rerun") == {"sent": len(ids)}
            resent += len(ids)
    assert resent == 12
    assert write_run(fresh_worker, meta_run.id) == []
    assert meta_file.read_bytes() == before
    with transaction(db_engine) as s:
        assert s.exec(select(func.count()).select_from(AdExportRow)
                      .where(AdExportRow.run_id == meta_run.id)).one() == 12
    assert not list(meta_file.parent.glob(".*.tmp"))  # no temporary file left behind


def test_export_paths_stay_under_the_export_directory(tmp_path):
    assert ad_exports.file_path(tmp_path, 1, 2, 3, "facebook") == tmp_path.resolve() / "1" / "2" / "3" / "facebook.csv"
    for bad in ("../etc", "face/book", "Facebook", "", "a" * 51):
        try:
            ad_exports.file_path(tmp_path, 1, 2, 3, bad)
        except ad_exports.ExportPathError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    for ids in ((-1, 2, 3), (1, True, 3)):
        try:
            ad_exports.run_dir(tmp_path, *ids)  # type: ignore[arg-type]
        except ad_exports.ExportPathError:
            continue
        raise AssertionError(f"{ids!r} was accepted")

