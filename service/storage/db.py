"""The database: engines (SQLite in WAL mode, or PostgreSQL), sessions, and the migration check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlmodel import Session

MIGRATIONS = Path(__file__).parent / "migrations"


class NotMigrated(RuntimeError):
    """The database is missing tables or is behind the code's migrations: run ``herald migrate``."""


def is_sqlite(url: str) -> bool:
    """True for a SQLite database URL."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """An engine for ``url``: SQLite files get WAL, foreign keys and a busy timeout; PostgreSQL URLs without a
    driver use psycopg 3, with a pool of ``pool_size`` connections (``max_overflow`` more at a peak)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            if parsed.database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed when the block ends and rolled back when it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str):
    """Alembic's configuration for ``url`` (migrations shipped in ``service/storage/migrations``)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(url: str) -> str:
    """The newest migration the code ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (``None`` when it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(url: str, engine: Engine | None = None) -> tuple[str | None, str]:
    """Apply every migration not yet applied; return (revision before, revision after)."""
    from alembic import command

    engine = engine or make_engine(url)
    before = current_revision(engine)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, current_revision(engine) or ""


def check_migrated(engine: Engine, url: str) -> None:
    """Raise :class:`NotMigrated` (naming the command to run) unless the database is at the code's head."""
    head = head_revision(url)
    current = current_revision(engine)
    if current != head:
        where = "has no Herald tables" if current is None and not inspect(engine).get_table_names() else (
            f"is at migration {current or 'none'}")
        raise NotMigrated(f"the database {where}; the code needs migration {head}: run `herald migrate`")
