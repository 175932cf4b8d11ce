"""The service's store at scale: bulk upsert of N customers from Parquet, then a summary-only evaluation of the
stored audience, on SQLite and PostgreSQL.

``python benchmarks/service_store.py [N] [--backends sqlite,postgresql]`` (N defaults to 1,000,000):

* the customers are the realistic workload's (``benchmarks/workload.py``: distinct real-looking phones and
  e-mail addresses in seven countries, malformed and missing ones, nulls), written as one Parquet file;
* **upsert**: ``service.storage.customers.upsert_customers`` of that file (checked by the engine's audience
  reader, then ``executemany`` on SQLite / ``COPY`` on PostgreSQL) into a fresh migrated SQLite file and into a
  fresh schema of the PostgreSQL at 127.0.0.1:5432 db ``test`` (made per run, dropped after); goal ≤ 30 s at
  1M. Then the org's columnar copy made and stored (``customer_copy.refresh``), which the bulk upload route
  does in a thread of its own after it has answered;
* **dry-run summary**: ``service.storage.audience.audience_frame`` of an audience group holding every stored
  customer (a filter group), then ``Herald.evaluate(...).summary()`` with the realistic message (20
  personalization rules, eligibility, sms → email → push); goal ≤ 3 s at 1M. Measured three ways: right
  after the upload (the copy as stored), after 1,000 customers changed since (their rows read again on top of
  the copy), and cold (no copy: the org read whole from the table, and the copy made again).

Prints a Markdown table. Set ``HERALD_TEST_POSTGRES`` to use another PostgreSQL.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["HERALD_BENCH_WORKLOAD"] = "realistic"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import workload  # noqa: E402
from fresh_db import fresh_database  # noqa: E402

PG = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
#: an audience group holding every customer with an id (all of them): the whole stored audience
EVERYONE = {"include": [{"kind": "filter", "group": 1, "filter": {"field": "customer.id", "exists": True}}],
            "exclude": []}


def measure(backend: str, n: int, data: bytes, herald, message) -> dict:
    """Upsert ``data`` (Parquet of ``n`` customers) into a fresh ``backend`` database, then dry-run it."""
    from service.storage.customer_changes import drop_copy
    from service.storage.customer_copy import refresh
    from service.storage.customers import upsert_customers
    from service.storage.db import make_engine, transaction
    from service.storage.keys import create_org

    with tempfile.TemporaryDirectory(prefix="herald-store-bench-") as folder:
        url, drop = fresh_database(backend, Path(folder))
        engine = make_engine(url)
        try:
            with transaction(engine) as s:
                org, _, _ = create_org(s, "bench")
                org_id = org.id or 0
            t0 = time.perf_counter()
            with transaction(engine) as s:
                result = upsert_customers(s, org_id, herald, data, "parquet", keep_valid=True)
            upsert = time.perf_counter() - t0
            t0 = time.perf_counter()
            refresh(engine, org_id, herald)
            copy = time.perf_counter() - t0
            herald.evaluate(message, workload.reader_frame(1000, herald), at=workload.AT).summary()  # compile once, as a running service has
            out = {"backend": backend, "n": n, "created": result.created, "rejected": len(result.rejected),
                   "upsert": upsert, "copy": copy}
            out["warm"] = _dry_run(engine, org_id, herald, message)
            changed = [{"id": f"c{i:07d}", "points": i % 97} for i in range(0, n, max(1, n // 1000))]
            with transaction(engine) as s:
                upsert_customers(s, org_id, herald, "".join(json.dumps(r) + "\n" for r in changed).encode(), "jsonl")
            out["changed"] = _dry_run(engine, org_id, herald, message)
            with transaction(engine) as s:
                drop_copy(s.connection(), org_id)
            out["cold"] = _dry_run(engine, org_id, herald, message)
            return out
        finally:
            engine.dispose()
            drop()


def _dry_run(engine, org_id: int, herald, message) -> dict:
    """Read the stored audience and summarise its evaluation: seconds of each part, recipients, summary."""
    from service.storage.audience import audience_frame

    t0 = time.perf_counter()
    frame = audience_frame(engine, org_id, herald, EVERYONE)
    read = time.perf_counter() - t0
    t1 = time.perf_counter()
    summary = herald.evaluate(message, frame, at=workload.AT).summary()
    evaluate = time.perf_counter() - t1
    return {"read": read, "evaluate": evaluate, "total": read + evaluate, "recipients": frame.height,
            "summary": summary}


def _included(summary) -> object:
    for name in ("included", "eligible"):
        if hasattr(summary, name):
            return getattr(summary, name)
    if isinstance(summary, dict):
        return summary.get("included", "?")
    return "?"


def main() -> None:
    args = sys.argv[1:]
    backends = ["sqlite", "postgresql"]
    if "--backends" in args:
        i = args.index("--backends")
        backends = args[i + 1].split(",")
        del args[i:i + 2]
    n = int(args[0]) if args else 1_000_000
    herald, message = workload.engine()
    buf = io.BytesIO()
    workload.audience(n).write_parquet(buf)
    data = buf.getvalue()
    lines = ["| store | customers | upsert s (goal ≤ 30 s at 1M) | rows/s | copy made after it s "
             "| dry run: read s + evaluate s | dry-run summary s (goal ≤ 3 s at 1M) | after 1,000 changed s "
             "| cold (no copy) s | recipients | included |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for backend in backends:
        r = measure(backend, n, data, herald, message)
        warm = r["warm"]
        lines.append(f"| {backend} | {n:,} | {r['upsert']:.1f} | {n / r['upsert']:,.0f} | {r['copy']:.1f} | "
                     f"{warm['read']:.2f} + {warm['evaluate']:.2f} | {warm['total']:.2f} | "
                     f"{r['changed']['total']:.2f} | {r['cold']['total']:.2f} | {warm['recipients']:,} | "
                     f"{_included(warm['summary'])} |")
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    print(f"\n1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(the machine is shared: other processes' load slows every figure)")


if __name__ == "__main__":
    main()
