"""A fresh, migrated database for one benchmark case: a new SQLite file, or a new schema in the local
PostgreSQL (``HERALD_TEST_POSTGRES``), dropped — with any schemas named alongside — by the clean-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

PG = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database(backend: str, work: Path, *, also_drop: Sequence[str] = ()) -> tuple[str, Callable[[], None]]:
    """(url, clean-up) of a fresh migrated database: ``backend`` is ``sqlite`` (a new file in ``work``) or
    ``postgresql`` (a new schema; the clean-up drops it and the schemas of ``also_drop``)."""
    from sqlalchemy import make_url, text

    from service.storage.db import make_engine, migrate

    if backend == "sqlite":
        url = f"sqlite:///{work / f'herald-{secrets.token_hex(3)}.db'}"
        migrate(url)
        return url, lambda: None
    schema = f"herald_bench_{secrets.token_hex(4)}"
    admin = make_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.begin() as conn:
            for name in (schema, *also_drop):
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()

    try:
        migrate(url)
    except BaseException:
        drop()
        raise
    return url, drop
