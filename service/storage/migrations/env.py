"""Alembic's environment: Herald's table models, on the connection ``herald migrate`` passes (or the URL)."""

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import service.storage.tables  # noqa: F401  (registers the table models on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run() -> None:
    """Run the migrations on the given connection, or on a new one to ``sqlalchemy.url``."""
    conn = config.attributes.get("connection")
    if conn is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _migrate(conn)
    else:
        _migrate(conn)


def _migrate(conn) -> None:
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
