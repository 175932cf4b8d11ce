"""Delivery: how fast a whole send run goes out, from approval to the last recipient.

``python benchmarks/delivery.py [N] [--transports log,http] [--setups pg1,pg2,sqlite]`` (N defaults to 20,000):

* the audience is the realistic workload's (``benchmarks/workload.py``: distinct real-looking phones and e-mail
  addresses in seven countries, malformed and missing ones, nulls, subscription states), uploaded through the
  API (``keep_valid=true``: malformed rows are reported and left out, as a marketer's upload would be);
* the message is the sample one (``rules/examples``: eligibility, personalization, channel priority sms ↔
  e-mail, a generated coupon per recipient, signed unsubscribe links), seeded through the API, then submitted,
  dry-run and approved through the API while the workers are already running;
* **transports**: ``log`` (every channel to the outbox table) and ``http`` (SMS through the real ``twilio``
  transport, configured by a ``HERALD_TRANSPORTS`` file, to a loopback Twilio-style server in another process
  that answers 201 with a message SID; e-mail still to the outbox);
* **setups**: ``pg1`` / ``pg2``: one or two ``herald worker`` processes on the PostgreSQL at 127.0.0.1:5432 db
  ``test`` (a fresh schema for Herald's tables and one for DBOS's, dropped after); ``sqlite``: the worker in
  this process (as ``herald serve`` embeds it) on a fresh SQLite file;
* measured from the database: deliveries per second of the whole run (its size over started → finished),
  sends per second (sent deliveries over first → last ``sent_at``), and approval → first ``sent_at``;
* **baselines**, in the same run: N plain INSERTs into the outbox table (one statement and commit each, and one
  ``executemany``) on each database, and the loopback provider's own rate under a bare ``httpx`` loop with the
  transport's connection limit (20).

Everything runs under ``nice -n 10``. Prints a Markdown table. ``--provider PORT`` (internal) runs the server.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ["HERALD_BENCH_WORKLOAD"] = "realistic"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from fresh_db import fresh_database  # noqa: E402

SID = "AC" + "0123456789abcdef" * 2
EXAMPLES = ROOT / "rules" / "examples"
ENDED = ("sent", "failed", "cancelled")
CONNECTIONS = 20  # the HTTP transports' default max_connections


# --- the loopback provider --------------------------------------------------------------------------------


class _Provider(BaseHTTPRequestHandler):
    """Twilio's Messages resource, as far as a sender sees it: 201 and a message SID for every POST."""

    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 16))
        with _Provider.lock:
            _Provider.count += 1
        body = json.dumps({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}).encode()
        self._answer(201, body)

    def do_GET(self) -> None:
        self._answer(200, json.dumps({"count": _Provider.count}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def provider_main(port: int) -> None:
    """Serve the loopback provider on 127.0.0.1:``port`` until killed."""
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256  # the transport opens its connections at once
    ThreadingHTTPServer(("127.0.0.1", port), _Provider).serve_forever()


class Provider:
    """The loopback provider in its own process (its own GIL and core share, as a real provider would be)."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, __file__, "--provider", str(self.port)], cwd=ROOT)
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        for _ in range(100):
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the loopback provider did not start")

    def count(self) -> int:
        """POSTs answered so far."""
        import httpx

        return int(httpx.get(self.url, timeout=5).json()["count"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


async def _bare_loop(url: str, n: int) -> float:
    import httpx

    form = {"To": "+919812345678", "From": "HERALD", "Body": "Summer sale: 20% off with code ABCD1234."}
    left = iter(range(n))
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def one() -> None:
            for _ in left:
                r = await client.post(f"{url}/2010-04-01/Accounts/{SID}/Messages.json", data=form,
                                      auth=(SID, "token"))
                assert r.status_code == 201
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
        return time.perf_counter() - t0


def provider_baseline(provider: Provider, n: int) -> float:
    """Requests per second the provider answers to a bare httpx loop (``CONNECTIONS`` at a time)."""
    return n / asyncio.run(_bare_loop(provider.url, n))


# --- databases --------------------------------------------------------------------------------------------


def database(backend: str, work: Path) -> tuple[str, str | None, Any]:
    """(url, DBOS schema, clean-up) of a fresh, migrated database (DBOS's schema dropped with it)."""
    dbos = None if backend == "sqlite" else f"dbos_bench_{secrets.token_hex(4)}"
    url, drop = fresh_database(backend, work, also_drop=[dbos] if dbos else [])
    return url, dbos, drop


def insert_baseline(backend: str, n: int, work: Path) -> tuple[float, float]:
    """(rows/s one INSERT and commit at a time, rows/s one executemany) into the outbox table of a fresh
    ``backend`` database: what writing each send's record costs with nothing else around it."""
    from sqlalchemy import insert

    from service.storage.db import make_engine
    from service.storage.tables import OutboxMessage

    url, _, drop = database(backend, work)
    engine = make_engine(url)
    try:
        table: Any = OutboxMessage.__table__  # type: ignore[attr-defined]
        rows = [{"key": f"k{i:012d}", "channel": "sms", "to": f"+9198{i:08d}",
                 "body": {"text": "Summer sale: 20% off with code ABCD1234.", "from": "HERALD"},
                 "created_at": datetime.now(UTC)} for i in range(2 * n)]
        t0 = time.perf_counter()
        for row in rows[:n]:
            with engine.begin() as conn:
                conn.execute(insert(table), row)
        one = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(table), rows[n:])
        many = n / (time.perf_counter() - t0)
        return one, many
    finally:
        engine.dispose()
        drop()


# --- a send run -------------------------------------------------------------------------------------------


def audience_csv(n: int) -> bytes:
    """The realistic workload's ``n`` customers as the CSV a marketer uploads (lists joined with ``|``)."""
    import polars as pl
    import workload

    frame = workload.audience(n).drop("push_token", "subscription.push", "blocked")
    buf = io.BytesIO()
    frame.with_columns(pl.col("affinities").list.join("|")).write_csv(buf)
    return buf.getvalue()


def _env(url: str, dbos: str | None, work: Path, transports: Path | None) -> dict[str, str]:
    settings = work / "settings.yaml"
    settings.write_text("plugins:\n  plugins.channels.email:\n    unsubscribe_secret: bench-secret-0123456789abcdef\n")
    env = {"HERALD_DATABASE_URL": url, "HERALD_FIELDS": str(ROOT / "rules" / "fields.yaml"),
           "HERALD_SETTINGS": str(settings), "HERALD_DEFAULT_TRANSPORT": "log"}
    if dbos:
        env["HERALD_DBOS_SCHEMA"] = dbos
    if transports:
        env["HERALD_TRANSPORTS"] = str(transports)
    return env


def _seed(app: Any, data: bytes) -> tuple[int, dict[str, str], dict[str, str], int]:
    """An org, the uploaded audience and the sample message ready to submit: (message id, marketer headers,
    approver headers, customers stored)."""
    import yaml
    from litestar.testing import TestClient

    from service.demo import API, _Filler, _ok
    from service.storage.db import transaction
    from service.storage.keys import create_org

    with transaction(app.state.db.engine) as s:
        _, _, admin_key = create_org(s, "bench")
    now = datetime.now(UTC)
    with TestClient(app) as c:
        admin = {"Authorization": f"Bearer {admin_key}"}
        keys = {who: _ok(c.post(f"{API}/users", json={"name": who, "roles": [who]}, headers=admin), who)["api_key"]
                for who in ("marketer", "approver")}
        h = {"Authorization": f"Bearer {keys['marketer']}"}
        loaded = _ok(c.post(f"{API}/customers/bulk", params={"keep_valid": "true"}, content=data,
                            headers={**h, "Content-Type": "text/csv"}), "customers")
        sample = yaml.safe_load((EXAMPLES / "summer-sale.message.yaml").read_text(encoding="utf-8"))
        rules = {kind: _ok(c.post(f"{API}/rulesets", content=(EXAMPLES / ref).read_bytes(),
                                  headers={**h, "Content-Type": "application/yaml"}), ref)["name"]
                 for kind, ref in sample["rules"].items()}
        group = _ok(c.post(f"{API}/audience-groups", json={"name": "Everyone", "filter": {
            "any": [{"field": "customer.phone", "exists": True}, {"field": "customer.email", "exists": True}]}},
            headers=h), "audience group")
        campaign = _ok(c.post(f"{API}/campaigns", json={"name": "Bench", "starts": now.date().isoformat(),
                                                        "ends": (now + timedelta(days=60)).date().isoformat(),
                                                        "objective": "revenue"}, headers=h), "campaign")
        incentive = _ok(c.post(f"{API}/incentives", json={"name": "Coupons", **sample["incentive"]}, headers=h),
                        "incentive")
        filler = _Filler(c, h, sample, rules, group["id"], incentive["id"], campaign["id"])
        message = filler.message("Delivery benchmark", {"kind": "immediate"})
    stored = int(loaded.get("created", 0)) + int(loaded.get("updated", 0))
    return message, h, {"Authorization": f"Bearer {keys['approver']}"}, stored


def _approve(app: Any, message_id: int, marketer: dict[str, str], approver: dict[str, str]) -> datetime:
    """Submit and dry-run (the marketer), approve (the approver); the instant the approval was answered."""
    from litestar.testing import TestClient

    from service.demo import API, _ok

    url = f"{API}/messages/{message_id}"
    with TestClient(app) as c:
        version = _ok(c.post(f"{url}/submit", headers=marketer), "submit")["submitted_version"]["hash"]
        run = _ok(c.post(f"{url}/dry-run", json={"summary_only": True}, headers=marketer), "dry run")["run_id"]
        _ok(c.post(f"{url}/approve", json={"version_hash": version, "dry_run_id": run}, headers=approver), "approve")
    return datetime.now(UTC)


class WorkerProcesses:
    """``herald worker`` processes on one database; their output goes to files in ``logs``."""

    def __init__(self, env: dict[str, str], logs: Path, count: int):
        self.procs = []
        for i in range(count):
            out = (logs / f"w{i}.log").open("wb")
            self.procs.append((subprocess.Popen(
                [sys.executable, "-m", "service.cli", "worker", "--id", f"bench-w{i}"], cwd=ROOT,
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT),
                logs / f"w{i}.log"))
        deadline = time.monotonic() + 120
        for proc, log in self.procs:  # each says so on stderr once DBOS is launched
            while b"Herald worker " not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"a worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        for proc, _ in self.procs:
            proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=UTC))


def _run_state(engine: Any, message_id: int) -> dict[str, Any] | None:
    from sqlalchemy import func
    from sqlmodel import select

    from service.storage.db import transaction
    from service.storage.tables import Delivery, Run

    with transaction(engine) as s:
        run = s.exec(select(Run).where(Run.message_id == message_id, Run.kind == "send")).first()
        if run is None:
            return None
        first, last = s.exec(select(func.min(Delivery.sent_at), func.max(Delivery.sent_at))
                             .where(Delivery.run_id == run.id)).one()
        counts = dict(s.exec(select(Delivery.status, func.count()).where(Delivery.run_id == run.id)
                             .group_by(Delivery.status)).all())  # type: ignore[arg-type]
        channels = dict(s.exec(select(Delivery.channel, func.count()).where(
            Delivery.run_id == run.id, Delivery.status == "sent").group_by(Delivery.channel)).all())  # type: ignore[arg-type]
    return {"id": run.id, "status": run.status, "size": run.size, "started": _utc(run.started_at),
            "finished": _utc(run.finished_at), "first": _utc(first), "last": _utc(last), "counts": counts,
            "channels": channels}


def send_run(backend: str, workers: int, transport: str, data: bytes, work: Path,
             provider: Provider | None) -> dict[str, Any]:
    """One whole send run of the uploaded audience; its figures."""
    import dataclasses

    from service.main import build_app
    from service.settings import Settings
    from service.storage.db import make_engine
    from service.worker.assemble import start, stop

    url, dbos, drop = database(backend, work)
    transports = None
    if transport == "http":
        assert provider is not None
        transports = work / "transports.json"
        transports.write_text(json.dumps({"sms": {"kind": "twilio", "account_sid": SID, "auth_token": "bench-token",
                                                  "base_url": provider.url}}))
    env = _env(url, dbos, work, transports)
    settings = Settings.from_env(env)
    app = build_app(settings)
    engine = make_engine(url)
    pool, inproc = None, None
    sent_before = provider.count() if provider else 0
    try:
        message_id, marketer, approver, stored = _seed(app, data)
        if backend == "sqlite":
            inproc = start(dataclasses.replace(settings, worker_id="bench-inproc"))
        else:
            pool = WorkerProcesses(env, work, workers)
        approved = _approve(app, message_id, marketer, approver)
        deadline = time.monotonic() + 1800
        state = _run_state(engine, message_id)
        while state is None or state["status"] not in ENDED:
            if time.monotonic() > deadline:
                raise SystemExit(f"the run did not end in 30 minutes: {state}")
            time.sleep(0.25)
            state = _run_state(engine, message_id)
    finally:
        if pool:
            pool.stop()
        if inproc:
            stop(inproc)
        engine.dispose()
        app.state.db.engine.dispose()
        drop()
    sent = sum(n for s, n in state["counts"].items() if s == "sent")
    run_s = (state["finished"] - state["started"]).total_seconds()
    send_s = (state["last"] - state["first"]).total_seconds() if state["first"] else float("nan")
    return {"backend": backend, "workers": workers, "transport": transport, "stored": stored, **state,
            "sent": sent, "run_s": run_s, "per_s": state["size"] / run_s, "sent_per_s": sent / send_s,
            "first_s": (state["first"] - approved).total_seconds() if state["first"] else float("nan"),
            "provider_posts": (provider.count() - sent_before) if provider else None}


SETUPS = {"pg1": ("postgresql", 1), "pg2": ("postgresql", 2), "sqlite": ("sqlite", 1)}


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--provider"]:
        provider_main(int(args[1]))
        return

    def option(name: str, default: str) -> list[str]:
        if name in args:
            i = args.index(name)
            value = args[i + 1]
            del args[i:i + 2]
            return value.split(",")
        return default.split(",")

    transports = option("--transports", "log,http")
    setups = option("--setups", "pg1,pg2,sqlite")
    n = int(args[0]) if args else 20_000
    os.nice(10)  # every process of the benchmark (workers and provider included) yields to other work
    data = audience_csv(n)
    provider = Provider() if "http" in transports else None
    lines = ["| transport | setup | run size | sent (sms / email) | excluded | failed | whole run s | deliveries/s "
             "| sends/s | approval → first send s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="herald-delivery-bench-") as folder:
            work = Path(folder)
            for backend in sorted({SETUPS[s][0] for s in setups}):
                one, many = insert_baseline(backend, n, work)
                base.append(f"* {n:,} plain INSERTs into the outbox table on {backend}: {one:,.0f} rows/s one "
                            f"statement and commit each; {many:,.0f} rows/s in one executemany")
                print(base[-1], file=sys.stderr, flush=True)
            if provider:
                rate = provider_baseline(provider, n)
                base.append(f"* the loopback provider under a bare httpx loop ({CONNECTIONS} connections, {n:,} "
                            f"POSTs): {rate:,.0f} requests/s")
                print(base[-1], file=sys.stderr, flush=True)
            for transport in transports:
                for setup in setups:
                    backend, workers = SETUPS[setup]
                    label = (f"{workers} worker process{'es' if workers > 1 else ''}, PostgreSQL"
                             if backend == "postgresql" else "in-process worker, SQLite")
                    try:
                        r = send_run(backend, workers, transport, data, work, provider)
                    except Exception as exc:  # a shared server refusing clients ends one case, not the run
                        lines.append(f"| {transport} | {label} | not measured: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:160]} |||||||| ")
                        print(lines[-1], file=sys.stderr, flush=True)
                        continue
                    c = r["counts"]
                    ch = r["channels"]
                    posts = "" if r["provider_posts"] is None else f" (provider got {r['provider_posts']:,})"
                    lines.append(f"| {transport} | {label} | {r['size']:,} | {r['sent']:,} ({ch.get('sms', 0):,} / "
                                 f"{ch.get('email', 0):,}){posts} | {c.get('excluded', 0):,} | {c.get('failed', 0):,} | "
                                 f"{r['run_s']:.1f} | {r['per_s']:,.0f} | {r['sent_per_s']:,.0f} | {r['first_s']:.2f} |")
                    print(lines[-1], file=sys.stderr, flush=True)
    finally:
        if provider:
            provider.stop()
    print("\n".join(lines))
    print("\nBaselines, same run:\n" + "\n".join(base))
    print(f"\n1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared with other "
          "work; everything ran under nice -n 10)")


if __name__ == "__main__":
    main()
