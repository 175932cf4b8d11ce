"""One measurement in a fresh process: ``python benchmarks/bench_one.py ENGINE N`` prints one JSON line.

The audience and per-row inputs are built first (not timed); then only the decisions are timed. Engines
that are slow per row run on a sample (``SAMPLE``) and the figures are per decision of that sample.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

from benchmarks import peers
from benchmarks.workload import AT, SEND_AT, engine, peer_audience

#: the most rows a slow engine decides; figures are per decision of that sample
SAMPLE = {"compiled": 200_000, "reference": 50_000, "durable": 5_000, "compiled-pipeline": 100_000, "reference-pipeline": 20_000,
          "durable-pipeline": 5_000, "rule-engine": 20_000, "zen": 50_000, "zen-batch": 50_000,
          "durable-direct": 5_000}
CHECK = 5_000  # decisions compared across engines


def herald_frame(raw: pl.DataFrame, herald) -> pl.DataFrame:
    """The typed ``customer.*`` frame Herald's reader would produce."""
    from engine.columnar import complete

    frame = raw.rename({c: "customer.id" if c == "id" else f"customer.{c}" for c in raw.columns})
    return complete(frame, herald.catalogue.customer_types(), herald.registry.channels)


def peer_rows(raw: pl.DataFrame) -> list[dict]:
    """Rows with ``local_hour`` for the peers (computed per zone, as Herald does)."""
    from engine.facts import time_facts, zone

    zones = raw.get_column("timezone").unique().to_list()
    hours = {z: time_facts(SEND_AT, zone(z) or zone("UTC"))["time.local_hour"] for z in zones}
    return raw.with_columns(pl.col("timezone").replace_strict(list(hours), list(hours.values()),
                                                              default=hours[None]).alias("local_hour")).to_dicts()


def main(name: str, n: int) -> dict:
    herald, message = engine()
    raw = peer_audience(n, herald)
    take = min(n, SAMPLE.get(name, n))
    decisions: list = []
    if name in ("columnar", "polars-chain"):
        frame = herald_frame(raw, herald) if name == "columnar" else peer_rows_frame(raw)
        t0 = time.perf_counter()
        if name == "columnar":
            from engine.columnar import evaluate_frame

            out = evaluate_frame(frame, message, herald.registry, AT, slow_reach=False)
            elapsed = time.perf_counter() - t0
            head = out.head(CHECK)
            decisions = list(zip(head["excluded_reason"], head["variant"], head["channel"], strict=True))
        else:
            out = peers.polars_chain(frame)
            elapsed = time.perf_counter() - t0
            decisions = list(out.head(CHECK).iter_rows())
    elif name.endswith("-pipeline"):
        from engine.columnar.decisions import customer_of

        customers = [customer_of(r) for r in herald_frame(raw.head(take), herald).iter_rows(named=True)]
        # the façade in per-recipient mode, whatever the size; deciding happens while the run is read
        run = herald.evaluate(message, customers, at=AT, mode="per_recipient",
                              evaluator=name.removesuffix("-pipeline"))
        t0 = time.perf_counter()
        out = list(run)
        elapsed = time.perf_counter() - t0
        decisions = [(d.excluded_reason, d.variant, d.channel) for d in out[:CHECK]]
    elif name in ("compiled", "reference", "durable"):
        elapsed, decisions = rules_only(name, herald, message, raw.head(take))
    else:
        rows = peer_rows(raw.head(take))
        from benchmarks.durable_peer import durable_peer

        run = {"rule-engine": peers.rule_engine_peer, "zen": lambda: peers.zen_peer(False),
               "zen-batch": lambda: peers.zen_peer(True), "durable-direct": durable_peer}[name]()
        t0 = time.perf_counter()
        out = run(rows)
        elapsed = time.perf_counter() - t0
        decisions = out[:CHECK]
    digest = hashlib.sha256(json.dumps(decisions).encode()).hexdigest()[:16]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": name, "n": n, "sample": take, "seconds": elapsed, "us_per_decision": elapsed / take * 1e6,
            "decisions_per_s": take / elapsed, "peak_rss_mb": round(rss, 1), "digest": digest}


def peer_rows_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """The raw frame with ``local_hour`` (the hand-written chain's input)."""
    from engine.facts import time_facts, zone

    zones = raw.get_column("timezone").unique().to_list()
    hours = {z: time_facts(SEND_AT, zone(z) or zone("UTC"))["time.local_hour"] for z in zones}
    return raw.with_columns(pl.col("timezone").replace_strict(list(hours), list(hours.values()),
                                                              default=hours[None]).alias("local_hour"))


def rules_only(name: str, herald, message, raw: pl.DataFrame) -> tuple[float, list]:
    """Herald's per-recipient evaluators on the rules alone (facts prebuilt; blocked and channel in Python)."""
    from engine.columnar.decisions import customer_of
    from engine.evaluators import get_evaluator
    from engine.facts import FactBuilder

    ev = get_evaluator(name)
    fb = FactBuilder(AT, message.facts, send_at=SEND_AT)
    customers = [customer_of(r) for r in herald_frame(raw, herald).iter_rows(named=True)]
    facts = [fb.facts(c) for c in customers]
    elig, pers = message.rulesets["eligibility"], message.rulesets["personalization"]
    thens = {r.id: r.then for r in pers.rules}
    reach = [(c, herald.registry.channel(c)) for c in message.channels]
    out = []
    t0 = time.perf_counter()
    for c, f in zip(customers, facts, strict=True):
        if f.get("customer.blocked") is True:
            out.append(("blocked", None, None))
            continue
        fired = ev.fired(elig, f)
        if fired:
            out.append((elig.rule(fired[0]).then["exclude"], None, None))
            continue
        channel = next((name for name, ch in reach if ch.reachability(c, message).reachable), None)
        if channel is None:
            out.append(("no_reachable_channel", None, None))
            continue
        v = ev.fired(pers, f)
        out.append((None, thens[v[0]]["variant"] if v else "default", channel))
    return time.perf_counter() - t0, out[:CHECK]


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
