"""The ``herald`` command line: evaluate, rules check/test/schema, plugins, demo.

User errors (bad YAML, bad CSV rows, unknown fields) print the file, line and what to fix, and exit 2;
never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine import Customer, Decision, EngineError, ValidationFailed
from engine.audience import read_audience
from engine.evaluators import get_evaluator
from engine.pipeline import Pipeline
from engine.rulefiles import run_rule_tests
from engine.rulefiles.schema import json_schema_text
from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Herald: rules and plugins for campaign messages.")
rules_app = typer.Typer(no_args_is_help=True, help="Check and test rule files.")
app.add_typer(rules_app, name="rules")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
PROGRESS_THRESHOLD = 10_000
EXAMPLES = Path(__file__).resolve().parents[1] / "rules" / "examples"


def _engine(for_path: Path | None = None) -> Herald:
    herald = Herald.build(DEFAULT_PLUGINS)
    return herald.with_fields_for(for_path) if for_path else herald


def _fail(exc: EngineError) -> typer.Exit:
    if isinstance(exc, ValidationFailed):
        head, *_ = str(exc).split("\n", 1)
        err.print(f"[bold red]error:[/] {head}")
        for p in exc.problems:
            err.print(f"  {p}")
    else:
        err.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(2)


def _at(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date-time", param_hint="--at") from None
    if at.tzinfo is None:
        raise typer.BadParameter("give a time zone offset, e.g. 2026-07-01T10:00:00+05:30", param_hint="--at")
    return at


@app.command()
def evaluate(
    message: Annotated[Path, typer.Option("--message", "-m", help="message file (YAML)")],
    audience: Annotated[Path, typer.Option("--audience", "-a", help="audience file (.csv, .jsonl or .parquet)")],
    at: Annotated[str | None, typer.Option(help="evaluation instant, ISO 8601 with offset (default: now)")] = None,
    evaluator: Annotated[str, typer.Option(help="compiled | columnar | durable | reference")] = "compiled",
    explain: Annotated[bool, typer.Option("--explain", help="include the step-by-step trace")] = False,
    render: Annotated[bool, typer.Option("--render", help="render the chosen creative")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table | json | ndjson")] = "table",
    keep_valid: Annotated[bool, typer.Option("--keep-valid", help="skip bad audience rows instead of failing")] = False,
    merge_duplicates: Annotated[bool, typer.Option(
        "--merge-duplicates", help="merge rows of one customer id (later non-empty values win) instead of failing")] = False,
    summary_only: Annotated[bool, typer.Option("--summary", help="print only the summary")] = False,
) -> None:
    """Evaluate a message for an audience: one decision per recipient, and a summary.

    Audiences above HERALD_COLUMNAR_THRESHOLD rows (default 20,000; always with --evaluator columnar) are
    read as columns and decided by the bulk plan when every step supports it; NDJSON is then written in
    batches. --explain and --render always take the per-recipient path.
    """
    from engine.columnar import read_frame, unsupported
    from engine.columnar.decisions import customer_of
    from engine.columnar.stream import run_frame

    if fmt not in ("table", "json", "ndjson"):
        raise typer.BadParameter("choose table, json or ndjson", param_hint="--format")
    when = _at(at)
    try:
        if evaluator != "columnar":
            get_evaluator(evaluator)
        herald = _engine(message)
        msg = herald.load_message(message)
        pipeline = Pipeline(msg, herald.registry, at=when, evaluator=evaluator, explain=explain, render=render)
        bulk_able = pipeline.bulk_threshold is not None and unsupported(
            msg, herald.registry, explain=explain, render=render, slow_reach=False) is None
        frame = None
        if bulk_able or audience.suffix.lower() == ".parquet":
            fr = read_frame(audience, herald.catalogue, keep_valid=keep_valid, channels=herald.registry.channels,
                            merge_duplicates=merge_duplicates)
            frame, rejected = fr.frame, fr.rejected
        else:
            read = read_audience(audience, herald.catalogue, keep_valid=keep_valid, merge_duplicates=merge_duplicates)
            rejected = read.rejected
    except EngineError as exc:
        raise _fail(exc) from None
    for p in rejected:
        err.print(f"[yellow]skipped:[/] {p}")
    try:
        if frame is not None and bulk_able and frame.height > (pipeline.bulk_threshold or 0):
            decisions = run_frame(pipeline, frame, decisions=not summary_only)
        elif frame is not None:
            decisions = pipeline.run(_progress([customer_of(r) for r in frame.iter_rows(named=True)]))
        else:
            decisions = pipeline.run(_progress(read.customers))
        if summary_only:
            for _ in decisions:
                pass
            if fmt == "table":
                _summary(pipeline)
            else:
                sys.stdout.write(json.dumps({"summary": pipeline.summary.as_dict()}) + "\n")
        elif fmt == "ndjson":
            write = sys.stdout.write
            batch: list[str] = []
            for d in decisions:
                batch.append(json.dumps(d.as_dict(), ensure_ascii=False))
                if len(batch) >= 10_000:
                    write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                write("\n".join(batch) + "\n")
            write(json.dumps({"summary": pipeline.summary.as_dict()}) + "\n")
        elif fmt == "json":
            items = [d.as_dict() for d in decisions]
            json.dump({"decisions": items, "summary": pipeline.summary.as_dict()}, sys.stdout, ensure_ascii=False, indent=2)
            sys.stdout.write("\n")
        else:
            _table(list(decisions), explain)
            _summary(pipeline)
    except EngineError as exc:
        raise _fail(exc) from None


def _progress(customers: list[Customer]) -> Iterable[Customer]:
    if len(customers) <= PROGRESS_THRESHOLD:
        return customers
    from rich.progress import track

    return track(customers, description="evaluating", console=err, transient=True)


def _table(decisions: list[Decision], explain: bool) -> None:
    table = Table("customer", "included", "reason", "variant", "channel", "fallbacks", "send_at")
    for d in decisions:
        table.add_row(d.customer, "yes" if d.included else "no", d.excluded_reason or "", d.variant or "",
                      d.channel or "", ",".join(d.fallbacks), d.send_at.isoformat() if d.send_at else "")
    out.print(table)
    if explain:
        for d in decisions:
            _explain(d)


def _explain(d: Decision) -> None:
    fallbacks = f", fallbacks {', '.join(d.fallbacks)}" if d.fallbacks else ""
    verdict = f"{d.channel} (variant {d.variant}{fallbacks})" if d.included else f"excluded: {d.excluded_reason}"
    out.print(f"[bold]{d.customer}[/] → {verdict}")
    for step in d.trace:
        detail = ", ".join(f"{k}={v}" for k, v in step.detail.items())
        out.print(f"   {step.step:<17} {step.event:<16} {detail}")


def _summary(pipeline: Pipeline) -> None:
    s = pipeline.summary.as_dict()
    out.print(f"[bold]{s['total']}[/] recipients: {s['included']} included, {s['excluded']} excluded; "
              f"estimated cost {s['estimated_cost']:.2f}")
    for title, key in (("channel", "channels"), ("variant", "variants"), ("exclusion reason", "exclusion_reasons")):
        if s[key]:
            out.print(f"  by {title}: " + ", ".join(f"{k} {v}" for k, v in s[key].items()))
    out.print("  rules: " + ", ".join(f"{k}@{v}" for k, v in pipeline.rules_versions.items()))


def _rule_files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json")
                              and f.name != "schema.json" and f.name != "fields.yaml" and ".message." not in f.name)
        else:
            yield p


@rules_app.command("check")
def rules_check(paths: Annotated[list[Path], typer.Argument(help="rule files or folders")]) -> None:
    """Load and check rule files: schema, fields, types, duplicate ids, unreachable rules."""
    failed = 0
    for path in _rule_files(paths):
        try:
            rs = _engine(path).load_ruleset(path)
        except EngineError as exc:
            failed += 1
            _fail(exc)
            continue
        out.print(f"[green]ok[/] {path}: {rs.kind} ruleset {rs.name}@{rs.version}, {len(rs.rules)} rules")
    if failed:
        raise typer.Exit(2)


@rules_app.command("test")
def rules_test(
    paths: Annotated[list[Path], typer.Argument(help="rule files or folders")],
    evaluator: Annotated[str, typer.Option(help="compiled | columnar | durable | reference")] = "compiled",
) -> None:
    """Run the ``tests:`` examples inside rule files."""
    failed = passed = 0
    try:
        ev = get_evaluator(evaluator)
    except EngineError as exc:
        raise _fail(exc) from None
    for path in _rule_files(paths):
        try:
            rs = _engine(path).load_ruleset(path)
        except EngineError as exc:
            failed += 1
            _fail(exc)
            continue
        failures = run_rule_tests(rs, ev)
        for f in failures:
            err.print(f"[red]FAIL[/] {path}: {f}")
        failed += len(failures)
        passed += len(rs.tests) - len(failures)
    out.print(f"{passed} examples passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@rules_app.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of rule files (the same as rules/schema.json)."""
    sys.stdout.write(json_schema_text())


@app.command()
def plugins() -> None:
    """List every registered channel, incentive type, optimizer and field with its owning plugin."""
    try:
        herald = _engine()
    except EngineError as exc:
        raise _fail(exc) from None
    table = Table("name", "kind", "plugin")
    for name, kind, owner in herald.registry.rows():
        table.add_row(name, kind, owner)
    out.print(table)


@app.command()
def demo(at: Annotated[str, typer.Option(help="evaluation instant")] = "2026-07-04T13:30:00+00:00") -> None:
    """Evaluate the sample message in rules/examples for the bundled audience; show three explained decisions."""
    message, audience = EXAMPLES / "summer-sale.message.yaml", EXAMPLES / "audience.csv"
    try:
        herald = _engine(message)
        msg = herald.load_message(message)
        customers = read_audience(audience, herald.catalogue).customers
        pipeline = Pipeline(msg, herald.registry, at=_at(at), explain=True, render=True)
        decisions = list(pipeline.run(customers))
    except EngineError as exc:
        raise _fail(exc) from None
    out.print(f"[bold]{msg.title}[/] ({msg.id}) for {len(customers)} customers of {audience.name} at {at}\n")
    _summary(pipeline)
    out.print()
    shown = [next((d for d in decisions if d.included and d.fallbacks), None),
             next((d for d in decisions if d.included and d.channel == "email"), None),
             next((d for d in decisions if not d.included), None)]
    for d in filter(None, shown):
        _explain(d)
        if d.rendered:
            out.print(f"   rendered ({d.rendered['channel']}): {json.dumps(dict(d.rendered['payload']), ensure_ascii=False)[:300]}")
        out.print()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
