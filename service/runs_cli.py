"""``herald runs watch RUN``: a send run's progress read straight from the database.

Registered on the CLI app by :mod:`service.cli`; SQLAlchemy and the tables are imported inside the command so
that ``herald --help`` stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

DATABASE_HELP = "the database URL (default: HERALD_DATABASE_URL, else sqlite:///herald.db)"
#: a delivery in one of these is done: the provider took it (and maybe a receipt came back), or it never will
DONE = ("sent", "delivered", "bounced", "opened", "clicked", "failed", "excluded", "cancelled")
#: the order statuses are shown in (any other status follows, by name)
ORDER = ("sent", "delivered", "opened", "clicked", "bounced", "failed", "excluded", "cancelled", "pending",
         "sending", "retrying")
#: a send run's final statuses and the exit status each gives
ENDS = {"sent": 0, "failed": 1, "cancelled": 1}


@dataclass(frozen=True)
class Snapshot:
    """One reading of a send run: its status, its size (``None`` before it started) and deliveries per status."""

    run_id: int
    message_id: int
    status: str
    size: int | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        """Deliveries that are finished: sent (with or without a receipt), failed, excluded or cancelled."""
        return sum(n for s, n in self.counts.items() if s in DONE)

    @property
    def total(self) -> int | None:
        """The run's size, else (not started yet) the deliveries written so far, else ``None``."""
        return self.size if self.size is not None else (sum(self.counts.values()) or None)

    @property
    def ended(self) -> bool:
        """True once the run is sent, failed or cancelled."""
        return self.status in ENDS

    def counts_text(self) -> str:
        """``sent 12 · failed 1 · …``: every status with deliveries, in :data:`ORDER`; ``sent 0`` when none."""
        keys = [s for s in ORDER if s in self.counts] + sorted(s for s in self.counts if s not in ORDER)
        return " · ".join(f"{s} {self.counts[s]:,}" for s in keys) or "sent 0"

    def line(self) -> str:
        """The snapshot in one line (what ``--once`` prints above its bar)."""
        total = self.total
        share = f" ({100 * self.done / total:.0f}%)" if total else ""
        of = f"{total:,}" if total is not None else "?"
        return f"run {self.run_id} (message {self.message_id}): {self.status}, {self.done:,}/{of} done{share}"


class UnknownRun(LookupError):
    """No send run with that id."""


def read(engine: Any, run_id: int) -> Snapshot:
    """The run's snapshot (one query for the run, one for its deliveries per status); :class:`UnknownRun` when
    there is no run ``run_id`` or it is a dry run."""
    from sqlalchemy import func
    from sqlmodel import select

    from service.storage.db import transaction
    from service.storage.tables import Delivery, Run

    with transaction(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise UnknownRun(f"herald runs watch: no run {run_id} in this database; give the id of a send run "
                             "(GET /api/v1/messages/{id}/runs lists them)")
        if run.kind != "send":
            raise UnknownRun(f"herald runs watch: run {run_id} is a {run.kind.replace('_', ' ')}, not a send; "
                             "give the id of a send run")
        rows = s.exec(select(Delivery.status, func.count()).where(Delivery.run_id == run_id)
                      .group_by(Delivery.status)).all()  # type: ignore[arg-type]
    return Snapshot(run_id, run.message_id, run.status, run.size, {str(k): int(n) for k, n in rows})


def register(app: typer.Typer, user_errors: Callable[[Any], Any], user_error: type[Exception]) -> None:
    """Add the ``runs`` sub-app (``runs watch``) to ``app`` (``user_errors`` turns ``user_error`` into exit
    status 2)."""
    runs = typer.Typer(no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                       rich_markup_mode=None, help="Follow send runs.")
    app.add_typer(runs, name="runs")

    @runs.command()
    @user_errors
    def watch(
        run_id: Annotated[int, typer.Argument(metavar="RUN", help="the send run's id", min=1)],
        database: Annotated[str | None, typer.Option("--database", metavar="URL", help=DATABASE_HELP)] = None,
        once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit (status 0)")] = False,
        every: Annotated[float, typer.Option("--every", metavar="SECONDS", min=0.05, max=60,
                                             help="seconds between two readings")] = 1.0,
    ) -> None:
        """Show a send run's progress: a bar of deliveries done (sent, failed, excluded, cancelled) out of its
        size, with the count of each status, refreshed until the run ends. Exits 0 when the run is sent, 1 when
        it failed or was cancelled; with --once, prints one snapshot and exits 0."""
        from rich.console import Console
        from sqlalchemy.exc import OperationalError, ProgrammingError

        from service.server_cli import _settings
        from service.storage.db import NotMigrated, check_migrated, make_engine

        settings = _settings(database)
        engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
        console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
        try:
            try:
                check_migrated(engine, settings.database_url)
                snap = read(engine, run_id)
                if not once:
                    snap = _follow(console, engine, snap, every)
            except NotMigrated as exc:
                raise user_error(f"herald runs watch: {exc}") from None
            except (OperationalError, ProgrammingError) as exc:
                raise user_error(f"herald runs watch: cannot read {settings.safe_database_url} ({exc.orig})") from None
            except UnknownRun as exc:
                raise user_error(str(exc)) from None
        finally:
            engine.dispose()
        if once:
            _print_once(console, snap)
            return
        console.print(snap.line())
        console.print(f"  {snap.counts_text()}")
        raise typer.Exit(ENDS[snap.status])


def _print_once(console: Any, snap: Snapshot) -> None:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    console.print(snap.line())
    row = Table.grid(padding=(0, 2))
    row.add_row(ProgressBar(total=snap.total, completed=snap.done, width=40), snap.counts_text())
    console.print(row)


def _follow(console: Any, engine: Any, snap: Snapshot, every: float) -> Snapshot:
    """Refresh a progress bar from the database every ``every`` seconds until the run ends; the last snapshot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("run {task.fields[run]} {task.fields[status]}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("run", total=snap.total, completed=snap.done, run=snap.run_id, status=snap.status,
                            counts=snap.counts_text())
        while not snap.ended:
            time.sleep(every)
            snap = read(engine, snap.run_id)
            bar.update(task, total=snap.total, completed=snap.done, status=snap.status, counts=snap.counts_text())
    return snap
