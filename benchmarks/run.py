"""Run every benchmark: ``python benchmarks/run.py [--quick] [--workload current|realistic]`` (``make bench``
installs the ``bench`` extra first and runs both workloads). Each figure comes from a fresh process; medians
of 3. Prints Markdown tables (for README.md) and writes them to ``benchmarks/.work/<workload>/results.md``
(both workloads: also ``benchmarks/.work/results.md``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

ENGINES = ["columnar", "polars-chain", "compiled", "reference", "durable", "compiled-pipeline",
           "reference-pipeline", "durable-pipeline", "durable-direct", "zen", "zen-batch", "rule-engine"]


def one(engine: str, n: int) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "bench_one.py"), engine, str(n)], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"bench_one {engine} {n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(cmd: list[str], stdout=subprocess.DEVNULL, env=None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one command in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {(proc.stderr.read() if proc.stderr else b'').decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def engines_table(sizes: list[int], repeats: int) -> list[str]:
    lines = ["| workload | engine | recipients | sample timed | decisions/s | µs/decision | peak RSS MB | same decisions |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for n in sizes:
        digests = {}
        for engine in ENGINES:
            runs = [one(engine, n) for _ in range(repeats)]
            med = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            digests[engine] = med["digest"]
            same = "yes" if med["digest"] == digests["columnar"] else "**NO**"
            lines.append(f"| {WORKLOAD} | {engine} | {n:,} | {med['sample']:,} | {med['decisions_per_s']:,.0f} | "
                         f"{med['us_per_decision']:.2f} | {statistics.median(r['peak_rss_mb'] for r in runs):,.0f} | {same} |")
            print(lines[-1], flush=True)
    return lines


def end_to_end(n: int, repeats: int) -> list[str]:
    import polars as pl

    from benchmarks.workload import WORK, audience, write_files

    message = write_files(WORK)
    raw = audience(n)
    parquet, csv = WORK / f"audience-{n}.parquet", WORK / f"audience-{n}.csv"
    raw.write_parquet(parquet)
    raw.with_columns(pl.col("affinities").list.join("|")).write_csv(csv)
    herald = [sys.executable, "-m", "service.cli"]  # this checkout's CLI (PYTHONPATH), as the `herald` script runs it
    lines = ["| workload | audience | output | wall s (median of 3) | peak RSS MB |", "| --- | --- | --- | ---: | ---: |"]
    env = {**os.environ, "HERALD_SETTINGS": str(WORK / "settings.yaml"), "PYTHONPATH": str(ROOT)}
    for path in (parquet, csv):
        out = WORK / "decisions.ndjson"  # NDJSON is written to a file (--output), as a campaign run would
        for label, extra in (("--summary", ["--summary", "--format", "json"]),
                             ("NDJSON file", ["--format", "ndjson", "--output", str(out)])):
            cmd = [*herald, "evaluate", "-m", str(message), "-a", str(path), "--at", "2026-07-04T13:30:00+00:00", *extra]
            runs = [measure(cmd, env=env) for _ in range(repeats)]
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            lines.append(f"| {WORKLOAD} | {n:,} rows {path.suffix[1:]} | {label} | {wall:.2f} | {rss:,.0f} |")
            print(lines[-1], flush=True)
    return lines


WORKLOAD = os.environ.get("HERALD_BENCH_WORKLOAD", "current")


def service() -> list[str]:
    """The service's figures: ``service_store.py`` (bulk upsert and a stored-audience dry-run summary on SQLite
    and PostgreSQL) and ``http_load.py`` (single-recipient ``POST /api/v1/evaluate`` beside hello-world)."""
    out = ["## The service", ""]
    for cmd in ([str(HERE / "service_store.py"), os.environ.get("HERALD_BENCH_STORE_N", "1000000")],
                [str(HERE / "http_load.py"), "--seconds", "5"]):
        run = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        if run.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed:\n{run.stderr[-3000:]}")
        out += [run.stdout.strip(), ""]
        print(out[-2], flush=True)
    return out


def delivery() -> list[str]:
    """The delivery figures: ``delivery.py`` (a whole send run, log and loopback HTTP transports, 1 and 2 worker
    processes on PostgreSQL and the in-process worker on SQLite; ``HERALD_BENCH_DELIVERY_N`` recipients)."""
    cmd = [str(HERE / "delivery.py"), os.environ.get("HERALD_BENCH_DELIVERY_N", "20000")]
    run = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{run.stderr[-3000:]}")
    out = ["## Delivery", "", run.stdout.strip(), ""]
    print("\n".join(out), flush=True)
    return out


def main() -> None:
    """``--quick`` (20k, one run), ``--engines a,b`` (only these), ``--no-e2e`` / ``--e2e-only``,
    ``--workload current|realistic`` (default: both, one after the other, then the service's section unless
    ``--no-service``; ``--service-only`` runs just that; then the delivery section unless ``--no-delivery``;
    ``--delivery-only`` runs just that), ``--sizes 200000,1000000``."""
    global ENGINES, WORKLOAD
    args = sys.argv[1:]
    if "--service-only" in args:
        print("\n".join(service()))
        return
    if "--delivery-only" in args:
        delivery()
        return
    if "--workload" not in args:
        out = []
        for name in ("current", "realistic"):
            subprocess.run([sys.executable, __file__, *args, "--workload", name], check=True)
            out.append((HERE / ".work" / name / "results.md").read_text())
        if "--no-service" not in args:
            out.append("\n".join(service()))
        if "--no-delivery" not in args:
            out.append("\n".join(delivery()))
        (HERE / ".work" / "results.md").write_text("\n".join(out))
        return
    WORKLOAD = args[args.index("--workload") + 1]
    os.environ["HERALD_BENCH_WORKLOAD"] = WORKLOAD
    quick = "--quick" in args
    sizes, repeats = ([20_000], 1) if quick else ([100_000, 1_000_000], 3)
    if "--sizes" in args:
        sizes = [int(x) for x in args[args.index("--sizes") + 1].split(",")]
    if "--engines" in args:
        ENGINES = ["columnar", *(e for e in args[args.index("--engines") + 1].split(",") if e != "columnar")]
    out = []
    if "--e2e-only" not in args:
        out += ["## Engines", "", *engines_table(sizes, repeats), ""]
    if "--no-e2e" not in args:
        out += ["## End to end", "", *end_to_end(sizes[-1], repeats)]
    (HERE / ".work" / WORKLOAD).mkdir(parents=True, exist_ok=True)
    (HERE / ".work" / WORKLOAD / "results.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
