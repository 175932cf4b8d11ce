"""``herald migrate`` and the refusal to serve an unmigrated database."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from service.cli import app as cli
from service.http.app import create_app
from service.settings import Settings, SettingsError
from service.storage.db import NotMigrated, make_engine

runner = CliRunner()


def test_migrate_creates_the_tables_then_says_it_is_current(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    first = runner.invoke(cli, ["migrate", "--database", url])
    assert first.exit_code == 0, first.output
    assert "migrated from an empty database to 0006" in first.output
    again = runner.invoke(cli, ["migrate", "--database", url])
    assert again.exit_code == 0 and "already at 0006" in again.output


def test_the_app_refuses_an_unmigrated_database_and_names_the_command(tmp_path, herald):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(NotMigrated, match="run `herald migrate`"):
        create_app(Settings(database_url=url), herald)
    result = runner.invoke(cli, ["serve", "--database", url])
    assert result.exit_code == 2
    assert "herald migrate" in result.output


def test_ready_is_503_on_an_unmigrated_database_and_health_is_up(tmp_path, herald):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    app = create_app(Settings(database_url=url), herald, engine=make_engine(url), check=False)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        r = c.get("/ready")
        assert r.status_code == 503 and "herald migrate" in r.json()["detail"]


def test_serve_refuses_several_workers_on_sqlite(tmp_path):
    result = runner.invoke(cli, ["serve", "--workers", "2", "--database", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2 and "PostgreSQL" in result.output


def test_bad_settings_name_the_variable():
    with pytest.raises(SettingsError, match="HERALD_MAX_BODY must be a whole number"):
        Settings.from_env({"HERALD_MAX_BODY": "lots"})
    with pytest.raises(SettingsError, match="HERALD_PAGE_SIZE must be positive"):
        Settings.from_env({"HERALD_PAGE_SIZE": "0"})
    assert Settings.from_env({}).database_url == "sqlite:///herald.db"


def test_a_password_in_the_database_url_is_never_shown():
    s = Settings(database_url="postgresql://u:s3cret@db:5432/h")
    assert "s3cret" not in s.safe_database_url and "***" in s.safe_database_url


def test_the_migrations_build_exactly_the_tables_the_models_describe(db_engine):
    """A model changed without a migration (or a migration that drifted from its model) is a database that
    differs between a fresh install and an upgraded one: Alembic's comparison finds nothing to change."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import service.storage.tables  # noqa: F401  (the models register their tables)

    with db_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
