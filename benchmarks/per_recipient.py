"""Per-recipient speed: where the time of one full decision goes (exclusion + variant + channel, no
rendering) on the benchmark workload (:mod:`benchmarks.workload`), with the compiled evaluator.

    python benchmarks/per_recipient.py                 # 5 fresh processes, medians, the machine
    python benchmarks/per_recipient.py --profile       # cProfile of (a), top functions by own time
    python benchmarks/per_recipient.py --root DIR      # measure another checkout (e.g. a base commit)
    python benchmarks/per_recipient.py --compare DIR   # DIR (before) and this checkout (after), interleaved

Three figures, µs per decision:

(a) ``pipeline``: ``Pipeline.decide(customer)`` on prebuilt Customer objects (one pipeline for all);
(b) ``evaluate-1``: ``herald.evaluate(message, [customer], at=…, mode="per_recipient")`` and reading its one
    decision, once per customer (the first ``--few``): what an HTTP endpoint deciding one recipient per request pays, set-up included;
(c) ``prepared``: ``herald.prepare(message, at=…).decide(customer)`` with the prepared object kept (what the
    service keeps per message version), when the checkout has ``Herald.prepare``.

Each process builds its customers first (not timed), warms up once, then times ``--passes`` passes over
them in CPU time of the process (``time.process_time``: on a shared machine, wall time also counts the
neighbours) and keeps the fastest pass; the report is
the median over ``--runs`` processes. With ``--compare`` the processes of the two checkouts alternate, so
that both see the same load. All three must give the
same decisions (exclusion reason, variant, channel), checked in every process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> str:
    """CPU model, core count, Python and polars versions, in one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import polars as pl

    return (f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; polars {pl.__version__}")


def _setup(root: Path, n: int):
    sys.path.insert(0, str(root))
    from benchmarks.bench_one import herald_frame
    from benchmarks.workload import audience, engine
    from engine.columnar.decisions import customer_of

    herald, message = engine()
    customers = [customer_of(r) for r in herald_frame(audience(n), herald).iter_rows(named=True)]
    return herald, message, customers


def _passes(decide, customers, passes: int) -> tuple[float, list]:
    """The fastest pass's µs per decision over ``passes`` timed passes (after one warm-up pass), and the
    decisions."""
    out = [decide(c) for c in customers]  # warm-up: compiled functions, zone caches
    times = []
    for _ in range(passes):
        t0 = time.process_time()
        for c in customers:
            decide(c)
        times.append((time.process_time() - t0) / len(customers) * 1e6)
    return min(times), [(d.excluded_reason, d.variant, d.channel) for d in out]


def one(root: Path, n: int, passes: int, few: int) -> dict:
    """One process's figures (JSON-ready)."""
    herald, message, customers = _setup(root, n)
    from benchmarks.workload import AT
    from engine.pipeline import Pipeline

    pipeline = Pipeline(message, herald.registry, at=AT)
    figures, answers = {}, {}
    figures["pipeline"], answers["pipeline"] = _passes(pipeline.decide, customers, passes)

    def evaluate_one(customer):
        (decision,) = herald.evaluate(message, [customer], at=AT, mode="per_recipient")
        return decision

    figures["evaluate-1"], got = _passes(evaluate_one, customers[:few], passes)
    answers["evaluate-1"] = got + answers["pipeline"][few:]  # only the first ``few`` (a run's set-up is slow)
    if hasattr(herald, "prepare"):
        prepared = herald.prepare(message, at=AT)
        figures["prepared"], answers["prepared"] = _passes(prepared.decide, customers, passes)
    first = answers["pipeline"]
    for name, got in answers.items():
        if got != first:
            raise SystemExit(f"{name} decides differently from Pipeline.decide")
    return {"us": figures, "n": len(customers), "included": sum(1 for r, _, _ in first if r is None)}


def profile(root: Path, n: int, top: int) -> None:
    """cProfile of Pipeline.decide over the customers, the ``top`` functions by own time."""
    import cProfile
    import pstats

    herald, message, customers = _setup(root, n)
    from benchmarks.workload import AT
    from engine.pipeline import Pipeline

    pipeline = Pipeline(message, herald.registry, at=AT)
    for c in customers:
        pipeline.decide(c)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        for c in customers:
            pipeline.decide(c)
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--compare", type=Path, help="a checkout to measure before it, interleaved (e.g. the base)")
    parser.add_argument("-n", type=int, default=2000, help="customers (default 2,000)")
    parser.add_argument("--few", type=int, default=300, help="customers for (b), the first of them (default 300)")
    parser.add_argument("--passes", type=int, default=5, help="timed passes per process (the fastest kept)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes (median reported)")
    parser.add_argument("--profile", action="store_true", help="profile (a) instead of timing")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = args.root.resolve()
    if args.profile:
        profile(root, args.n, args.top)
        return
    if args.one:
        print(json.dumps(one(root, args.n, args.passes, args.few)))
        return
    roots = [args.compare.resolve(), root] if args.compare else [root]
    runs: dict[Path, list[dict]] = {r: [] for r in roots}
    for _ in range(args.runs):
        for r in roots:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", "--root", str(r), "-n", str(args.n),
                   "--passes", str(args.passes), "--few", str(args.few)]
            env = {**os.environ, "PYTHONPATH": str(r)}
            runs[r].append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                                     text=True).stdout))
    print(f"machine: {machine()}")
    for r in roots:
        first = runs[r][0]
        print(f"checkout: {r}; {first['n']:,} customers ({first['included']:,} included), median of {args.runs} "
              f"processes, fastest of {args.passes} passes each")
        for name in first["us"]:
            values = [one_run["us"][name] for one_run in runs[r]]
            print(f"  {name:<11} {statistics.median(values):8.2f} µs/decision   "
                  f"(runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
