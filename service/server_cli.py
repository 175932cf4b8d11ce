"""The service's commands: ``herald migrate``, ``herald serve`` and ``herald demo``.

Registered on the CLI app by :mod:`service.cli`; everything heavy (Litestar, SQLAlchemy, uvicorn) is imported
inside the commands so that ``herald --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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
        once), the sample customers and rulesets, a campaign and a draft message ready to dry-run."""
        import dataclasses

        from service.cli import samples
        from service.demo import SeedFailed, seed
        from service.main import build_app
        from service.storage.db import migrate as apply

        settings = _settings(database)
        if settings.fields_file is None:  # the sample rules test the sample org's fields
            settings = dataclasses.replace(settings, fields_file=samples().parent / "fields.yaml")
        apply(settings.database_url)
        app_ = build_app(settings)
        try:
            demo = seed(app_, samples())
        except SeedFailed as exc:
            raise user_error(f"herald demo: {exc}") from None
        base = f"http://127.0.0.1:{port}"
        print(f"Demo org seeded in {settings.safe_database_url}: {demo.customers} customers, campaign "
              f"{demo.campaign_id}, draft message {demo.message_id}.")
        print("API keys (shown only now; keep them):")
        for who, key in demo.keys.items():
            print(f"  {who:9} {key}")
        print(f"\nServe with HERALD_FIELDS={settings.fields_file} (the sample field catalogue), then dry-run the message:")
        print(f"  export HERALD={base} MARKETER={demo.keys['marketer']} APPROVER={demo.keys['approver']}")
        print(f"  curl -s -X POST $HERALD/api/v1/messages/{demo.message_id}/dry-run -H \"Authorization: Bearer $MARKETER\" "
              "-H 'Content-Type: application/json' -d '{\"limit\": 3}'")
        if then_serve:
            import uvicorn

            print(f"\nHerald on {base}  (API /api/v1, OpenAPI {base}/schema; Ctrl-C stops it)", flush=True)
            uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning")

    @app.command()
    @user_errors
    def serve(
        database: Annotated[str | None, typer.Option("--database", metavar="URL", help=DATABASE_HELP)] = None,
        host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="the port to listen on", min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(help="worker processes (PostgreSQL for more than one)", min=1)] = 1,
    ) -> None:
        """Serve the HTTP API (uvicorn). Refuses an unmigrated database, naming `herald migrate`."""
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
        if workers > 1:
            os.environ["HERALD_DATABASE_URL"] = settings.database_url
            uvicorn.run("service.main:app_from_env", factory=True, host=host, port=port, workers=workers,
                        log_level="warning")
        else:
            uvicorn.run(app_, host=host, port=port, log_level="warning")
