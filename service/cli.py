"""The ``herald`` command line: evaluate, explain, message check, rules check/test/schema, plugins, sample,
and the service's migrate, serve and demo (:mod:`service.server_cli`).

User errors (bad YAML, bad CSV rows, unknown fields, a folder where a file belongs, a missing
``HERALD_FIELDS`` file) print lines starting with the file at fault and what to fix, and exit 2; never a
traceback. Everything printed that comes from data (customer ids, keys, values, file contents) is shown
escaped: no terminal markup or control sequence from an input reaches the terminal.

The engine (and polars) is imported inside the commands, so ``herald --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from datetime import datetime

    from engine import Customer, Decision, EngineError, Message
    from engine.explain import ConditionResult, Explanation
    from engine.run import Run
    from engine.runtime import Herald

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings=CONTEXT, rich_markup_mode=None,
                  help="Herald: rules and plugins for campaign messages.")
rules_app = typer.Typer(no_args_is_help=True, context_settings=CONTEXT, rich_markup_mode=None, help="Check and test rule files.")
message_app = typer.Typer(no_args_is_help=True, context_settings=CONTEXT, rich_markup_mode=None, help="Check message files.")
app.add_typer(rules_app, name="rules")
app.add_typer(message_app, name="message")
# markup and emoji codes are off: data is printed as it is (styles come only from ``style=``)
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
PROGRESS_THRESHOLD = 10_000
TABLE_LIMIT = 1_000
SAMPLES_PACKAGE = "herald_samples"  # rules/ as package data, a namespace package (see pyproject.toml)
F = TypeVar("F", bound=Callable[..., Any])


class Format(StrEnum):
    """Output formats of ``evaluate``."""

    table = "table"
    json = "json"
    ndjson = "ndjson"


class ExplainFormat(StrEnum):
    """Output formats of ``explain``."""

    table = "table"
    json = "json"


class Mode(StrEnum):
    """Execution modes of ``evaluate`` (``engine.run``): how decisions are computed, not which rule
    interpreter computes them."""

    auto = "auto"
    per_recipient = "per-recipient"
    bulk = "bulk"

    @property
    def engine_name(self) -> str:
        """The mode's name in ``Herald.evaluate``."""
        return self.value.replace("-", "_")


#: the --evaluator help: the built-in names, and the plugins' (the registry checks the name once loaded)
EVALUATOR_HELP = ("rule evaluator, the interpreter of the rules: compiled (default), reference, durable, columnar "
                  "(bulk mode only), or one a plugin registers (herald plugins lists them)")


# --- escaping ---------------------------------------------------------------------------------------------

# C0/C1 controls, DEL, bidi overrides and line/paragraph separators: shown as escapes, never sent raw
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe(value: Any) -> str:
    """``value`` as text that cannot drive a terminal: control characters become ``\\xNN``/``\\uNNNN``.
    (The consoles never interpret markup, so ``[bold]`` is printed as written.)"""
    return _UNSAFE.sub(_escape_char, str(value))


def json_safe(text: str) -> str:
    """JSON text with DEL/C1 controls and bidi overrides as ``\\uNNNN`` (JSON escapes the C0 ones itself)."""
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps(value: Any, **kw: Any) -> str:
    """``value`` as JSON (non-ASCII kept, unknown types as text) made safe by :func:`json_safe`."""
    return json_safe(json.dumps(value, ensure_ascii=False, default=str, **kw))


def _show(value: Any) -> str:
    """A fact or operand for people: JSON-like (strings quoted), escaped."""
    return safe(dumps(value))


# --- errors -----------------------------------------------------------------------------------------------


class UserError(Exception):
    """A mistake in what the user gave; the message names the path and what to do."""


def _report(exc: EngineError, about: Path | str | None = None) -> None:
    """Print an engine error: every line starts with the file at fault (``about`` when the error names none)."""
    from engine import ValidationFailed

    def located(text: str, file: str | None) -> str:
        if about is None or file or text.startswith(str(about)):
            return text
        return f"{about}: {text}"

    if isinstance(exc, ValidationFailed):
        head = str(exc).split("\n", 1)[0]
        named = next((p.file for p in exc.problems if p.file and head.startswith(p.file)), None)
        if not re.fullmatch(r"\d+ problem\(s\)", head):
            err.print(safe(located(head, named)), style="bold red")
        for p in exc.problems:
            err.print(safe(located(str(p), p.file)))
    else:
        err.print(safe(located(str(exc), None)), style="bold red")


def _os_error(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else "herald"
    if isinstance(exc, IsADirectoryError):
        return f"{name}: is a folder; give the path of a file"
    if isinstance(exc, FileNotFoundError):
        return f"{name}: no such file; check the path"
    if isinstance(exc, PermissionError):
        return f"{name}: permission denied; make the file readable (or writable, for --output)"
    return f"{name}: {exc.strerror or exc}"


def user_errors(fn: F) -> F:
    """Turn user mistakes raised by a command into a message on stderr and exit status 2."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from engine import EngineError

        _WARNED.clear()  # each command shows its warnings once
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (``| head``): stop quietly
            _silence_stdout()
            raise typer.Exit(1) from None
        except EngineError as exc:
            _report(exc)
        except UserError as exc:
            err.print(safe(exc), style="bold red")
        except OSError as exc:
            err.print(safe(_os_error(exc)), style="bold red")
        except UnicodeDecodeError as exc:
            err.print(safe(f"herald: a file is not UTF-8 text ({exc.reason} at byte {exc.start})"), style="bold red")
        raise typer.Exit(2)

    return run  # type: ignore[return-value]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises nothing more."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. under a test runner)
        pass


@contextmanager
def about(path: Path | str) -> Iterator[None]:
    """Engine errors raised inside are reported against ``path`` (exit 2)."""
    from engine import EngineError

    try:
        yield
    except EngineError as exc:
        _report(exc, path)
        raise typer.Exit(2) from None


def input_file(path: Path, what: str) -> Path:
    """``path`` when it is a readable file; otherwise a ``UserError`` saying what to give instead."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give the {what} file")
    if not path.exists():
        raise UserError(f"{path}: no such file; give the {what} file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: cannot be read (permission denied); make the {what} file readable")
    return path


def _env_file(var: str, what: str) -> None:
    value = os.environ.get(var)
    if not value:
        return
    p = Path(value)
    if p.is_dir():
        raise UserError(f"{var}={value}: is a folder; set {var} to {what} (or unset it)")
    if not p.is_file():
        raise UserError(f"{var}={value}: no such file; set {var} to {what} (or unset it)")
    if not os.access(p, os.R_OK):
        raise UserError(f"{var}={value}: cannot be read (permission denied); make it readable")


def _size_limit() -> None:
    from engine import ValidationFailed
    from engine.sourcefile import DEFAULT_MAX_FILE_BYTES, max_file_bytes

    try:
        max_file_bytes()
    except ValidationFailed:
        raise UserError(f"HERALD_MAX_FILE_BYTES={os.environ.get('HERALD_MAX_FILE_BYTES')}: must be a positive whole "
                        f"number of bytes; set it so (the default is {DEFAULT_MAX_FILE_BYTES}) or unset it") from None


# --- shared steps -----------------------------------------------------------------------------------------


def engine_for(path: Path | None = None, *, fields_file: Path | None = None) -> Herald:
    """The engine over the default plugins (and entry points), with the field catalogue of ``fields_file``,
    else the one found for ``path`` (``HERALD_FIELDS``, else the nearest fields.yaml)."""
    from engine.runtime import Herald
    from plugins import DEFAULT_PLUGINS

    _size_limit()
    _env_file("HERALD_SETTINGS", "a YAML file of plugin settings")
    if fields_file is None:
        _env_file("HERALD_FIELDS", "the org's fields.yaml")
    with about(os.environ.get("HERALD_SETTINGS") or fields_file or "herald"):
        try:
            herald = Herald.build(DEFAULT_PLUGINS, fields_file=fields_file)
        except ImportError as exc:  # an installed plugin whose code is missing or broken
            raise UserError(f"herald: a plugin could not be imported ({exc}); reinstall it, or leave it out with "
                            "HERALD_PLUGINS or HERALD_DISABLE_PLUGINS") from None
    _plugin_warnings(herald)
    if path is None or fields_file is not None:
        return herald
    with about(os.environ.get("HERALD_FIELDS") or path):
        return herald.with_fields_for(path)


_WARNED: set[str] = set()


def _plugin_warnings(herald: Herald) -> None:
    """Print, once per run, the registry's plugin-list warnings (a HERALD_PLUGINS / HERALD_DISABLE_PLUGINS name
    that is no installed plugin's) and settings warnings (a settings block naming no loaded plugin, a key no
    plugin asked for)."""
    settings = os.environ.get("HERALD_SETTINGS", "settings")
    for warning in (*herald.registry.plugin_warnings, *(f"{settings}: {w}" for w in herald.registry.settings_warnings)):
        if warning not in _WARNED:  # likely typos
            _WARNED.add(warning)
            err.print(safe(f"warning: {warning}"), style="yellow")


def load_message(herald: Herald, path: Path) -> Message:
    """Load and validate a message file; its warnings go to stderr."""
    with about(input_file(path, "message")):
        msg = herald.load_message(path)
    print_warnings(msg)
    return msg


def print_warnings(msg: Message) -> None:
    """One ``warning: file: path: what`` line per warning of the message."""
    for issue in msg.warnings:
        err.print(safe(f"warning: {msg.source}: {issue.path}: {issue.message}"), style="yellow")


def read_customers(herald: Herald, audience: Path, keep_valid: bool,
                   merge_duplicates: bool = False) -> tuple[list[Customer], list[Any]]:
    """Every customer of an audience file (and the rows rejected under ``keep_valid``)."""
    from engine.audience import read_audience

    with about(input_file(audience, "audience")):
        if audience.suffix.lower() == ".parquet":
            from engine.columnar import read_frame
            from engine.columnar.decisions import customer_of

            fr = read_frame(audience, herald.catalogue, keep_valid=keep_valid, channels=herald.registry.channels,
                            merge_duplicates=merge_duplicates)
            return [customer_of(r) for r in fr.frame.iter_rows(named=True)], fr.rejected
        read = read_audience(audience, herald.catalogue, keep_valid=keep_valid, merge_duplicates=merge_duplicates)
        return read.customers, read.rejected


def find_customer(herald: Herald, audience: Path, customer_id: str, keep_valid: bool,
                  merge_duplicates: bool = False) -> tuple[Customer, Iterator[Customer], int]:
    """The customer with this id in an audience file (read as columns, so large files are quick), the
    customers ahead of it (in file order, read lazily) and the number of customers."""
    from engine.columnar import read_frame
    from engine.columnar.decisions import customer_of

    with about(input_file(audience, "audience")):
        fr = read_frame(audience, herald.catalogue, keep_valid=keep_valid, channels=herald.registry.channels,
                        merge_duplicates=merge_duplicates)
    _skipped(fr.rejected)
    at = fr.frame.get_column("customer.id").eq(customer_id).arg_true()
    if at.len() == 0:
        raise UserError(f"{audience}: no customer with id {customer_id!r} among its {fr.frame.height:,} customers")
    index = int(at[0])
    ahead = (customer_of(r) for r in fr.frame.slice(0, index).iter_rows(named=True))
    return customer_of(fr.frame.row(index, named=True)), ahead, fr.frame.height


def _skipped(rejected: Iterable[Any]) -> None:
    for p in rejected:
        err.print(safe(f"skipped: {p}"), style="yellow")


def at_option(value: str | None) -> datetime:
    """The ``--at`` instant (default: now); a time zone offset is required."""
    from datetime import UTC, datetime

    if not value:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date-time", param_hint="--at") from None
    if at.tzinfo is None:
        raise typer.BadParameter("give a time zone offset, e.g. 2026-07-01T10:00:00+05:30", param_hint="--at")
    return at


@contextmanager
def output_to(path: Path | None) -> Iterator[tuple[Console, IO[str]]]:
    """The console and text stream a command writes its result to: stdout, or ``path`` (written to a
    temporary file beside it and moved into place only when the command succeeds)."""
    if path is None:
        yield out, sys.stdout
        return
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give --output a file name")
    if not path.parent.is_dir():
        raise UserError(f"{path}: the folder {path.parent} does not exist; create it or give --output another path")
    part = path.with_name(path.name + ".part")
    try:
        with part.open("w", encoding="utf-8") as stream:
            yield Console(file=stream, width=200, highlight=False, soft_wrap=True, markup=False, emoji=False,
                          no_color=True), stream
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    err.print(safe(f"wrote {path}"))


def _progress(items: Iterable[Any], total: int, label: str) -> Iterable[Any]:
    """``items``, with a transient progress bar on stderr when stderr is a terminal and the run is large."""
    if total <= PROGRESS_THRESHOLD or not err.is_terminal:
        return items
    return _counting(items, total, label)


def _counting(items: Iterable[Any], total: int, label: str) -> Iterator[Any]:
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        n = 0
        for item in items:
            n += 1
            if n % 1000 == 0:
                bar.update(task, completed=n)
            yield item
        bar.update(task, completed=total)


# --- commands ---------------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("herald")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        out.print(f"herald {found}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Herald: rules and plugins for campaign messages."""


@app.command()
@user_errors
def evaluate(
    message: Annotated[Path, typer.Option("--message", "-m", metavar="FILE", help="message file (YAML)")],
    audience: Annotated[Path, typer.Option("--audience", "-a", metavar="FILE", help="audience file (.csv, .jsonl or .parquet)")],
    at: Annotated[str | None, typer.Option(metavar="DATETIME", help="now, ISO 8601 with offset (default: the clock): a send before it is an error, a recurring message runs its next occurrence")] = None,
    evaluator: Annotated[str, typer.Option(metavar="NAME", help=EVALUATOR_HELP)] = "compiled",
    mode: Annotated[Mode, typer.Option(help="execution mode: auto (bulk above HERALD_COLUMNAR_THRESHOLD recipients when the bulk plan can serve the run, else per-recipient), per-recipient or bulk; a mode that cannot serve the options is an error")] = Mode.auto,
    explain: Annotated[bool, typer.Option("--explain", help="include the step-by-step trace (per-recipient mode)")] = False,
    render: Annotated[bool, typer.Option("--render", help="render the chosen creative (per-recipient mode)")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="output format")] = Format.table,
    keep_valid: Annotated[bool, typer.Option("--keep-valid", help="skip bad audience rows instead of failing")] = False,
    merge_duplicates: Annotated[bool, typer.Option(
        "--merge-duplicates", help="merge rows of one customer id (later non-empty values win) instead of failing")] = False,
    summary_only: Annotated[bool, typer.Option("--summary", help="print only the summary")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="write the result to this file")] = None,
) -> None:
    """Evaluate a message for an audience: one decision per recipient, and a summary.

    The evaluator is the rule interpreter; the mode is the execution strategy. In auto mode, audiences above
    HERALD_COLUMNAR_THRESHOLD rows (default 20,000) are decided by the bulk plan when it supports the
    message and the options (--evaluator columnar always runs in bulk mode), else one recipient at a time;
    the decisions are the same. --explain and --render need per-recipient mode: with --mode bulk or
    --evaluator columnar they are an error. A table is limited to 1,000 decisions: use --summary,
    --format ndjson or --output FILE for more.
    """
    from engine.columnar import read_frame

    when = at_option(at)
    herald = engine_for(message)
    msg = load_message(herald, message)
    input_file(audience, "audience")
    with about(audience):
        fr = read_frame(audience, herald.catalogue, keep_valid=keep_valid, channels=herald.registry.channels,
                        merge_duplicates=merge_duplicates)
    _skipped(fr.rejected)
    total = fr.frame.height
    with about(message):
        run = herald.evaluate(msg, fr.frame, at=when, mode=mode.engine_name, evaluator=evaluator,
                              explain=explain, render=render)
    if run.next_runs and fmt is Format.table:
        err.print(safe("next runs: " + ", ".join(t.isoformat() for t in run.next_runs)))
    if fmt is Format.table and not summary_only and output is None and total > TABLE_LIMIT:
        raise UserError(f"{audience}: {total:,} decisions are too many for a table (at most {TABLE_LIMIT:,}); "
                        "use --summary, --format ndjson or --output FILE")
    with about(message), output_to(output) as (console, stream):
        write_run(run, fmt, summary_only, explain, console, stream)


def write_run(run: Run, fmt: Format, summary_only: bool, explain: bool, console: Console, stream: IO[str]) -> None:
    """Print the run's decisions (and its summary) in ``fmt``."""
    if summary_only:
        run.summary()
        if fmt is Format.table:
            print_summary(run, console)
        else:
            stream.write(dumps({"summary": summary_data(run)}) + "\n")
    elif fmt is Format.ndjson:
        for piece in _progress_pieces(run.ndjson(), run, "evaluating"):
            stream.write(piece)
        stream.write(dumps({"summary": summary_data(run)}) + "\n")
    elif fmt is Format.json:
        items = [d.as_dict() for d in _progress(run, run.size, "evaluating")]
        stream.write(dumps({"decisions": items, "summary": summary_data(run)}, indent=2) + "\n")
    else:
        print_table(list(_progress(run, run.size, "evaluating")), explain, console)
        print_summary(run, console)


def _progress_pieces(pieces: Iterable[str], run: Run, label: str) -> Iterator[str]:
    """``pieces`` of output, with a transient progress bar of ``run.decided`` on a terminal stderr."""
    if run.size <= PROGRESS_THRESHOLD or not err.is_terminal:
        yield from pieces
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(label, total=run.size)
        for piece in pieces:
            bar.update(task, completed=run.decided)
            yield piece
        bar.update(task, completed=run.size)


def summary_data(run: Run) -> dict:
    """The summary object of the JSON outputs (with ``next_runs`` for a recurring message)."""
    data = run.summary().as_dict()
    if run.next_runs:
        data["next_runs"] = [t.isoformat() for t in run.next_runs]
    return data


def print_table(decisions: list[Decision], explain: bool, console: Console) -> None:
    """One row per decision, then each rendered payload (``--render``) and, with ``explain``, each trace."""
    table = Table("customer", "included", "reason", "variant", "channel", "fallbacks", "send_at")
    for d in decisions:
        table.add_row(safe(d.customer), "yes" if d.included else "no", safe(d.excluded_reason or ""),
                      safe(d.variant or ""), safe(d.channel or ""), safe(",".join(d.fallbacks)),
                      d.send_at.isoformat() if d.send_at else "")
    console.print(table)
    for d in decisions:  # --render: each recipient's rendered payload
        if d.rendered:
            console.print(safe(f"{d.customer} rendered ({d.rendered['channel']}): {dumps(dict(d.rendered['payload']))}"))
    if explain:
        for d in decisions:
            print_trace(d, console)


def print_trace(d: Decision, console: Console) -> None:
    """A decision's verdict and its step-by-step trace."""
    fallbacks = f", fallbacks {', '.join(d.fallbacks)}" if d.fallbacks else ""
    verdict = f"{d.channel} (variant {d.variant}{fallbacks})" if d.included else f"excluded: {d.excluded_reason}"
    console.print(safe(f"{d.customer} → {verdict}"))
    for step in d.trace:
        detail = ", ".join(f"{k}={v}" for k, v in step.detail.items())
        console.print(safe(f"   {step.step:<17} {step.event:<16} {detail}"))


def print_summary(run: Run, console: Console) -> None:
    """The counts by channel, variant and exclusion reason, the cost and the rules versions."""
    s = run.summary().as_dict()
    console.print(f"{s['total']} recipients: {s['included']} included, {s['excluded']} excluded; "
                  f"estimated cost {s['estimated_cost']:.2f}")
    for title, key in (("channel", "channels"), ("variant", "variants"), ("exclusion reason", "exclusion_reasons")):
        if s[key]:
            console.print(safe(f"  by {title}: " + ", ".join(f"{k} {v}" for k, v in s[key].items())))
    console.print(safe("  rules: " + ", ".join(f"{k}@{v}" for k, v in run.rules_versions.items())))


@app.command("explain")
@user_errors
def explain_command(
    message: Annotated[Path, typer.Option("--message", "-m", metavar="FILE", help="message file (YAML)")],
    audience: Annotated[Path, typer.Option("--audience", "-a", metavar="FILE", help="audience file (.csv, .jsonl or .parquet)")],
    customer: Annotated[str, typer.Option("--customer", "-c", metavar="ID", help="the id of the customer to explain")],
    at: Annotated[str | None, typer.Option(metavar="DATETIME", help="now, ISO 8601 with offset (default: the clock): a send before it is an error, a recurring message runs its next occurrence")] = None,
    evaluator: Annotated[str, typer.Option(metavar="NAME", help=EVALUATOR_HELP)] = "compiled",
    render: Annotated[bool, typer.Option("--render", help="render the chosen creative")] = False,
    fmt: Annotated[ExplainFormat, typer.Option("--format", help="output format")] = ExplainFormat.table,
    keep_valid: Annotated[bool, typer.Option("--keep-valid", help="skip bad audience rows instead of failing")] = False,
    merge_duplicates: Annotated[bool, typer.Option(
        "--merge-duplicates", help="merge rows of one customer id (later non-empty values win) instead of failing")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="write the result to this file")] = None,
) -> None:
    """Explain the decision for one customer: every rule of every ruleset with each condition's fact,
    operator, operand and outcome; the channels tried and why each was dropped; the send-time computation
    (every instant in the customer's zone and in UTC)."""
    from engine.explain import explain

    when = at_option(at)
    herald = engine_for(message)
    msg = load_message(herald, message)
    found, ahead, size = find_customer(herald, audience, customer, keep_valid, merge_duplicates)
    with about(message):  # those ahead are decided first, so a capped incentive counts as in a real run
        result = explain(msg, herald.registry, found, at=when, evaluator=evaluator, render=render,
                         before=ahead, audience_size=size)
    with output_to(output) as (console, stream):
        if fmt is ExplainFormat.json:
            stream.write(dumps(result.as_dict(), indent=2) + "\n")
        else:
            print_explanation(result, console)


def _both(result: Explanation, when: Any) -> str:
    shown = result.instant(when)
    return f"{shown['local']} ({result.zone}) = {shown['utc']} UTC" if shown else "—"


def print_explanation(result: Explanation, console: Console) -> None:
    """The explanation for people: decision, rulesets, channels, send time."""
    d = result.decision
    console.print(safe(f"customer {result.customer.id} (zone {result.zone}); now {_both(result, result.at)}"),
                  style="bold")
    if d.included:
        fallbacks = f", fallbacks {', '.join(d.fallbacks)}" if d.fallbacks else ""
        console.print(safe(f"decision: send on {d.channel}{fallbacks}, variant {d.variant}"))
    else:
        console.print(safe(f"decision: excluded ({d.excluded_reason})"))
    if d.incentive is not None:
        console.print(safe(f"incentive: {dumps(dict(d.incentive))}"))
    if d.rendered is not None:
        console.print(safe(f"rendered ({d.rendered['channel']}): {dumps(dict(d.rendered['payload']))}"))
    for rs in result.rulesets:
        fired = ", ".join(rs.fired) or "none"
        reached = "" if rs.reached else " — not reached: the customer was excluded before this step"
        console.print()
        console.print(safe(f"{rs.kind}: {rs.name}@{rs.version} (hit policy {rs.hit_policy}) fired: {fired}{reached}"),
                      style="bold")
        for rule in rs.rules:
            nearest = "  ← nearest miss" if rule.id == rs.nearest else ""
            console.print(safe(f"  {rule.status:<8} {rule.id} (priority {rule.priority}) then {dumps(rule.then)}{nearest}"))
            for line in _condition_lines(rule.condition, 6):
                console.print(safe(line))
    console.print()
    console.print("channels", style="bold")
    if not result.channels:
        console.print("  none tried")
    for ch in result.channels:
        why = f": {ch.why}" if ch.why else ""
        by = f" by {ch.step}" if ch.step else ""
        detail = f" {dumps(dict(ch.detail))}" if ch.detail else ""
        console.print(safe(f"  {ch.channel:<10} {ch.outcome}{by}{why}{detail}"))
    console.print()
    console.print("send time", style="bold")
    for line in _send_time_lines(result.send_time):
        console.print(safe(line))


def _condition_lines(node: ConditionResult, indent: int) -> Iterator[str]:
    pad = " " * indent
    verdict = "true " if node.outcome else "false"
    if node.kind == "cmp":
        seen = "missing" if node.missing else _show(node.seen)
        operand = "" if node.op in ("exists", "missing") else f" {_show(node.operand)}"
        yield f"{pad}{verdict}  {node.field} {node.op}{operand}  (seen: {seen})"
    elif node.kind == "always":
        yield f"{pad}{verdict}  always"
    else:
        yield f"{pad}{verdict}  {node.kind}:"
        for item in node.items:
            yield from _condition_lines(item, indent + 2)


def _send_time_lines(st: Mapping[str, Any]) -> Iterator[str]:
    def pair(value: dict[str, str] | None) -> str:
        return f"{value['local']} = {value['utc']} UTC" if value else "—"

    extra = "".join(f", {k} {st[k]}" for k in ("rrule", "local_time") if st.get(k))
    if st.get("quiet_hours"):
        extra += f", quiet hours {'–'.join(st['quiet_hours'])}"
    yield f"  schedule: {st['schedule']}{extra}"
    yield f"  now:              {pair(st['now'])}"
    yield f"  run time:         {pair(st['run_time'])}"
    if st.get("local_send_time"):
        yield f"  local send time:  {pair(st['local_send_time'])}"
    for d in st.get("deferrals", ()):
        yield f"  deferred by {d['step']} (window {'–'.join(d['window'] or ())}): {pair(d['was'])} → {pair(d['to'])}"
    yield f"  send at:          {pair(st['send_at'])}"
    if st.get("note"):
        yield f"  {st['note']}"


@message_app.command("check")
@user_errors
def message_check(paths: Annotated[list[Path], typer.Argument(metavar="FILE", help="message files")]) -> None:
    """Load and validate message files (and the rule files they name) without an audience. The files are
    loaded by one engine, so messages sharing a resource (a coupon series) under different settings are
    refused, naming both."""
    failed = 0
    herald: Herald | None = None
    for path in paths:
        try:
            if herald is None:
                herald = engine_for(path)
            else:  # the same engine (and the messages it loaded), with the field catalogue found for this file
                with about(os.environ.get("HERALD_FIELDS") or path):
                    herald = herald.with_fields_for(path)
            msg = load_message(herald, path)
        except typer.Exit:
            failed += 1
            continue
        rules = ", ".join(f"{k} {rs.name}@{rs.version}" for k, rs in msg.rulesets.items()) or "no rules"
        warned = f", {len(msg.warnings)} warning(s)" if msg.warnings else ""
        out.print(safe(f"ok {path}: message {msg.id}, {len(msg.creatives)} creative(s), {rules}{warned}"))
    if failed:
        raise typer.Exit(2)


def rule_files(paths: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """``(file, why skipped)`` for the files named and the YAML/JSON files in the folders named.

    A file named directly is always a rule file. In a folder, a rule file is a YAML/JSON mapping with a
    top-level ``ruleset`` key; other ones (message files, fields.yaml, schema.json …) are skipped with the
    reason. A file that cannot be parsed is not skipped: loading it reports where it is broken.
    """
    from engine import ValidationFailed
    from engine.sourcefile import read_source

    for p in paths:
        if not p.is_dir():
            yield p, None
            continue
        for f in sorted(p.rglob("*")):
            if f.suffix not in (".yaml", ".yml", ".json") or not f.is_file():
                continue
            try:
                data = read_source(f).data
            except ValidationFailed:
                yield f, None
                continue
            yield f, None if isinstance(data, dict) and "ruleset" in data else "not a rule file (no top-level 'ruleset' key)"


def _load_rulesets(paths: list[Path]) -> Iterator[tuple[Path, Any]]:
    """The rulesets of :func:`rule_files`; ``None`` for a file that failed (already reported)."""
    for path, skip in rule_files(paths):
        if skip:
            out.print(safe(f"skipped {path}: {skip}"), style="dim")
            continue
        try:
            input_file(path, "rule")
            with about(path):
                rs = engine_for(path).load_ruleset(path)
        except UserError as exc:
            err.print(safe(exc), style="bold red")
            rs = None
        except typer.Exit:
            rs = None
        yield path, rs


@rules_app.command("check")
@user_errors
def rules_check(paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="rule files or folders")]) -> None:
    """Load and check rule files: schema, fields, types, duplicate ids, unreachable rules. In folders,
    files that are not rule files (no top-level ``ruleset:``) are skipped and listed."""
    failed = 0
    for path, rs in _load_rulesets(paths):
        if rs is None:
            failed += 1
            continue
        out.print(safe(f"ok {path}: {rs.kind} ruleset {rs.name}@{rs.version}, {len(rs.rules)} rules"), style="green")
    if failed:
        raise typer.Exit(2)


@rules_app.command("test")
@user_errors
def rules_test(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="rule files or folders")],
    evaluator: Annotated[str, typer.Option(metavar="NAME", help=EVALUATOR_HELP)] = "compiled",
) -> None:
    """Run the ``tests:`` examples inside rule files; counts examples (an example fails once, however many
    of its expectations are wrong)."""
    passed = failed = broken = 0
    kinds = ev = None
    for path, rs in _load_rulesets(paths):
        if rs is None:
            broken += 1
            continue
        registry = engine_for(path).registry
        kinds = kinds or registry.kinds  # the rule kinds rs was loaded with
        ev = ev or registry.evaluator(evaluator)  # a registered one: built-in or a plugin's
        for failures in example_failures(rs, ev, kinds):
            for f in failures:
                err.print(safe(f"{path}: FAIL {f}"), style="red")
            failed += bool(failures)
            passed += not failures
    files = f"; {broken} file(s) could not be loaded" if broken else ""
    out.print(f"{passed} examples passed, {failed} failed{files}")
    if broken:
        raise typer.Exit(2)
    if failed:
        raise typer.Exit(1)


def example_failures(rs: Any, ev: Any, kinds: Any) -> Iterator[list[str]]:
    """The failure messages of each ``tests:`` example of ``rs`` in turn (empty: the example passed)."""
    from dataclasses import replace

    from engine.rulefiles import run_rule_tests

    for test in rs.tests:
        yield run_rule_tests(replace(rs, tests=(test,)), ev, kinds)


@rules_app.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of rule files for the installed plugins' rule kinds (with the built-in plugins
    only, the same as rules/schema.json)."""
    from engine.rulefiles.schema import json_schema_text

    sys.stdout.write(json_schema_text(engine_for().registry.kinds))


@app.command()
@user_errors
def plugins(
    fields: Annotated[Path | None, typer.Option("--fields", metavar="FILE", help="the org's fields.yaml (default: HERALD_FIELDS, "
                                                 "else the nearest fields.yaml in or above the current folder)")] = None,
) -> None:
    """List every registered channel, incentive type, optimizer, rule kind and contact field with its owning
    plugin, and every field rules may test (the field catalogue) with its type and where it comes from."""
    from engine.fields import BUILTIN_FIELDS
    from engine.runtime import find_fields_file

    if fields is not None:
        input_file(fields, "fields.yaml")
    herald = engine_for(Path.cwd(), fields_file=fields)
    table = Table("name", "kind", "plugin")
    for name, kind, owner in herald.registry.rows():
        table.add_row(safe(name), safe(kind), safe(owner))
    out.print(table)
    builtin = {f.path for f in BUILTIN_FIELDS}
    org_file = fields or find_fields_file(Path.cwd())
    catalogue = Table("field", "type", "from", "description")
    for spec in sorted(herald.catalogue, key=lambda s: s.path):
        contact = spec.path.removeprefix("customer.")  # a contact field's name has no dot: others miss
        owner = herald.registry.fields.get(spec.path) or herald.registry.contact_fields.get(contact)
        source = "engine" if spec.path in builtin else ", ".join(owner.owners) if owner else str(org_file)
        catalogue.add_row(safe(spec.path), spec.type, safe(source), safe(spec.description))
    out.print(catalogue)


def samples() -> Path:
    """The folder of the sample message, rules and audience (``rules/examples`` in a checkout): the data of the
    ``herald_samples`` package when Herald is installed, else the checkout's ``rules/examples``.

    ``herald_samples`` is a namespace package (rules/ holds data only); importlib.resources cannot read those on
    Python 3.11 when a path entry is not a folder, so its ``__path__`` is read directly."""
    import importlib

    try:
        package = importlib.import_module(SAMPLES_PACKAGE)
    except ModuleNotFoundError:
        package = None
    for entry in getattr(package, "__path__", ()):
        if (Path(entry) / "examples").is_dir():
            return Path(entry) / "examples"
    return Path(__file__).resolve().parents[1] / "rules" / "examples"


@app.command()
@user_errors
def sample(at: Annotated[str, typer.Option(metavar="DATETIME", help="evaluation instant")] = "2026-07-04T13:30:00+00:00") -> None:
    """Evaluate the sample message for the bundled audience offline (no database); show three explained
    decisions."""
    examples = samples()
    message, audience = examples / "summer-sale.message.yaml", examples / "audience.csv"
    herald = engine_for(message)
    msg = load_message(herald, message)
    customers, _ = read_customers(herald, audience, False)
    with about(message):
        run = herald.evaluate(msg, customers, at=at_option(at), explain=True, render=True)
        decisions = list(run)
    out.print(safe(f"{msg.title} ({msg.id}) for {len(customers)} customers of {audience.name} at {at}"), style="bold")
    out.print()
    print_summary(run, out)
    out.print()
    shown = [next((d for d in decisions if d.included and d.fallbacks), None),
             next((d for d in decisions if d.included and d.channel == "email"), None),
             next((d for d in decisions if not d.included), None)]
    for d in filter(None, shown):
        print_trace(d, out)
        if d.rendered:
            payload = dumps(dict(d.rendered["payload"]))[:300]
            out.print(safe(f"   rendered ({d.rendered['channel']}): {payload}"))
        out.print()


def _register_service_commands() -> None:
    from service import runs_cli, server_cli

    server_cli.register(app, user_errors, UserError)
    runs_cli.register(app, user_errors, UserError)


_register_service_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
