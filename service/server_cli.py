"""The service's commands: ``herald migrate``, ``herald serve`` and ``herald demo``.

Registered on the CLI app by :mod:`service.cli`; everything heavy (Litestar, SQLAlchemy, uvicorn) is imported
inside the commands so that ``herald --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

DATABASE_HELP = "the database URL (default: HERALD_DATABASE_URL, else sqlite:///herald.db)"


def _settings(database: str | None) -> Any:
    from service.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise typer.BadParameter(str(exc)) from None
    return settings.with_database(database) if database else settings


def register(app: typer.Typer, user_errors: Callable[[Any], Any], user_error: type[Exception]) -> None:
    """Add the service's commands to ``app`` (``user_errors`` turns ``user_error`` into exit status 2)."""

    @app.command()
    @user_errors
    def migrate(database: Annotated[str | None, typer.Option("--database", metavar="URL", help=DATABASE_HELP)] = None) -> None:
        """Create or upgrade the database's tables to this version of Herald (Alembic migrations)."""
        from sqlalchemy.exc import OperationalError

        from service.storage.db import migrate as apply

        settings = _settings(database)
        try:
            before, after = apply(settings.database_url)
        except OperationalError as exc:
            raise user_error(f"herald migrate: cannot reach {settings.safe_database_url} ({exc.orig})") from None
        state = "already at" if before == after else f"migrated from {before or 'an empty database'} to"
        print(f"{settings.safe_database_url}: {state} {after}")

    @app.command()
    @user_errors
    def demo(
        database: Annotated[str | None, typer.Option("--database", metavar="URL", help=DATABASE_HELP)] = None,
        then_serve: Annotated[bool, typer.Option("--serve", help="then serve the API (as `herald serve`)")] = False,
        port: Annotated[int, typer.Option(help="the port to serve on", min=1, max=65535)] = 8000,
    ) -> None:
        """Seed a demo org (migrating the database first): keys for an admin, a marketer and an approver (shown
        once), the sample customers and rulesets, a campaign and a draft message ready to dry-run; and a second
        message taken from draft to approved and sent by the embedded worker through the log transport (the
        outbox table), with its report."""
        import dataclasses

        from service.cli import samples
        from service.demo import SeedFailed, seed, wait_for_report
        from service.main import build_app
        from service.storage.db import migrate as apply

        settings = _settings(database)
        if settings.fields_file is None:  # the sample rules test the sample org's fields
            settings = dataclasses.replace(settings, fields_file=samples().parent / "fields.yaml")
        if settings.plugin_settings is None:  # real e-mail sends sign their unsubscribe links
            settings = dataclasses.replace(settings, plugin_settings=_demo_plugin_settings())
        settings = dataclasses.replace(settings, default_transport=settings.default_transport or "log")
        apply(settings.database_url)
        app_ = build_app(settings)
        base = f"http://127.0.0.1:{port}"
        with _embedded_worker(settings, True, user_error):
            try:
                demo = seed(app_, samples(), send_one=True)
            except SeedFailed as exc:
                raise user_error(f"herald demo: {exc}") from None
            print(f"Demo org seeded in {settings.safe_database_url}: {demo.customers} customers, campaign "
                  f"{demo.campaign_id}, draft message {demo.message_id}.")
            print("API keys (shown only now; keep them):")
            for who, key in demo.keys.items():
                print(f"  {who:9} {key}")
            assert demo.sent_message_id is not None
            report = wait_for_report(app_, demo.sent_message_id, demo.keys["marketer"])
            _print_report(demo.sent_message_id, report)
            print(f"\nServe with HERALD_FIELDS={settings.fields_file} HERALD_SETTINGS={settings.plugin_settings} "
                  "HERALD_DEFAULT_TRANSPORT=log, then dry-run the draft message:")
            print(f"  export HERALD={base} MARKETER={demo.keys['marketer']} APPROVER={demo.keys['approver']}")
            print(f"  curl -s -X POST $HERALD/api/v1/messages/{demo.message_id}/dry-run -H \"Authorization: Bearer "
                  "$MARKETER\" -H 'Content-Type: application/json' -d '{\"limit\": 3}'")
            print(f"  curl -s $HERALD/api/v1/messages/{demo.sent_message_id}/outbox?limit=2 -H \"Authorization: Bearer "
                  "$MARKETER\"")
            if then_serve:
                import uvicorn

                print(f"\nHerald on {base}  (API /api/v1, OpenAPI {base}/schema; delivery through the log "
                      "transport to the outbox; Ctrl-C stops it)", flush=True)
                uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning")

    @app.command()
    @user_errors
    def worker(
        database: Annotated[str | None, typer.Option("--database", metavar="URL", help=DATABASE_HELP)] = None,
        name: Annotated[str | None, typer.Option("--id", help="this worker's name (default: HERALD_WORKER_ID, else "
                                                  "host and pid); restart with the same name to take back its work")] = None,
    ) -> None:
        """Run a delivery worker: it schedules approved messages and sends their runs' chunks, sharing the work
        with every other worker on the same database (PostgreSQL for workers on several machines). Ctrl-C or
        SIGTERM stops it; unfinished work stays queued."""
        import dataclasses

        from service.storage.db import NotMigrated, check_migrated, make_engine
        from service.worker.assemble import start, stop

        settings = _settings(database)
        if name:
            settings = dataclasses.replace(settings, worker_id=name)
        probe = make_engine(settings.database_url)
        try:
            check_migrated(probe, settings.database_url)
        except NotMigrated as exc:
            raise user_error(f"herald worker: {exc}") from None
        finally:
            probe.dispose()
        ctx = _start_worker(settings, start, user_error)
        print(f"Herald worker {ctx.name} on {settings.safe_database_url} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        try:
            _wait_for_signal()
        finally:
            stop(ctx)

    @app.command()
    @user_errors
    def serve(
        database: Annotated[str | None, typer.Option("--database", metavar="URL", help=DATABASE_HELP)] = None,
        host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="the port to listen on", min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(help="worker processes (PostgreSQL for more than one)", min=1)] = 1,
        delivery: Annotated[bool, typer.Option("--delivery/--no-delivery",
                                               help="run a delivery worker in this process too (the embedded "
                                                    "default; with --no-delivery, run `herald worker` apart)")] = True,
    ) -> None:
        """Serve the HTTP API (uvicorn), with a delivery worker in the same process unless --no-delivery.
        Refuses an unmigrated database, naming `herald migrate`."""
        import os

        import uvicorn

        from service.main import build_app
        from service.storage.db import NotMigrated, is_sqlite

        settings = _settings(database)
        if workers > 1 and is_sqlite(settings.database_url):
            raise user_error("herald serve: several workers need PostgreSQL (HERALD_DATABASE_URL); SQLite serves one")
        try:
            app_ = build_app(settings)
        except NotMigrated as exc:
            raise user_error(f"herald serve: {exc}") from None
        print(f"Herald on http://{host}:{port}  (API /api/v1, OpenAPI /schema, database {settings.safe_database_url})",
              file=sys.stderr)
        with _embedded_worker(settings, delivery, user_error):
            if workers > 1:
                os.environ["HERALD_DATABASE_URL"] = settings.database_url
                uvicorn.run("service.main:app_from_env", factory=True, host=host, port=port, workers=workers,
                            log_level="warning")
            else:
                uvicorn.run(app_, host=host, port=port, log_level="warning")


def _start_worker(settings: Any, start: Callable[[Any], Any], user_error: type[Exception]) -> Any:
    from service.settings import SettingsError

    try:
        return start(settings)
    except SettingsError as exc:
        raise user_error(f"herald: {exc}") from None


@contextmanager
def _embedded_worker(settings: Any, enabled: bool, user_error: type[Exception]) -> Iterator[None]:
    """A delivery worker in this process while the block runs (when ``enabled``)."""
    if not enabled:
        yield
        return
    from service.worker.assemble import start, stop

    ctx = _start_worker(settings, start, user_error)
    try:
        yield
    finally:
        stop(ctx)


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    import signal
    import threading

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass


def _demo_plugin_settings() -> Any:
    """The demo's plugin settings file (``herald-demo.settings.yaml`` here, made once with a random e-mail
    unsubscribe secret, so links signed by one demo run verify in the next)."""
    import secrets
    from pathlib import Path

    path = Path("herald-demo.settings.yaml").resolve()
    if not path.exists():
        path.write_text("# made by `herald demo`: the e-mail channel signs its unsubscribe links with this secret\n"
                        "plugins:\n  plugins.channels.email:\n"
                        f"    unsubscribe_secret: {secrets.token_hex(24)}\n", encoding="utf-8")
    return path


def _print_report(message_id: int, report: dict[str, Any]) -> None:
    """The demo message's report, in a few lines."""
    print(f"\nMessage {message_id} went draft → awaiting_approval → approved → scheduled → sending → "
          f"{report['status']}:")
    print(f"  audience {report['audience']}, sent {report['sent']}, failed {report['failed']}, "
          f"waiting {report['waiting']}, control group {report['control_group']}")
    print(f"  excluded: {', '.join(f'{k} {v}' for k, v in report['excluded'].items()) or 'none'}")
    channels = ", ".join(f"{k} {v.get('sent', 0)}" for k, v in report["by_channel"].items())
    print(f"  by channel: {channels or 'none'}")
    print(f"  coupons issued {report['incentives']['coupons_issued']}, cost {report['cost']}")
