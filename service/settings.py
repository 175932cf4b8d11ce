"""The service's settings: ``HERALD_*`` environment variables (secrets are never logged or printed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATABASE = "sqlite:///herald.db"


class SettingsError(ValueError):
    """A ``HERALD_*`` variable holds a value the service cannot use (the message names it)."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """How the service runs.

    * ``database_url`` (``HERALD_DATABASE_URL``): ``sqlite:///path.db`` (the embedded default, WAL) or
      ``postgresql+psycopg://user@host:5432/db``.
    * ``max_body`` (``HERALD_MAX_BODY``): the largest request body in bytes (413 beyond); uploads included.
    * ``page_size`` / ``max_page_size``: default and largest page of listed items and decisions.
    * ``plugin_settings`` (``HERALD_SETTINGS``): the per-plugin settings file, as for the CLI.
    * ``fields_file`` (``HERALD_FIELDS``): the org field catalogue rules are checked against.
    * ``idempotency_hours``: how long a repeated ``Idempotency-Key`` replays the first response.
    """

    database_url: str = DEFAULT_DATABASE
    max_body: int = 50 * 1024 * 1024
    page_size: int = 100
    max_page_size: int = 1000
    plugin_settings: Path | None = None
    fields_file: Path | None = None
    idempotency_hours: int = 24
    extra_plugins: tuple[object, ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``HERALD_*`` variables (``env`` defaults to the process environment)."""
        env = os.environ if env is None else env
        settings_file = env.get("HERALD_SETTINGS") or None
        fields_file = env.get("HERALD_FIELDS") or None
        return cls(
            database_url=env.get("HERALD_DATABASE_URL") or DEFAULT_DATABASE,
            max_body=_int(env, "HERALD_MAX_BODY", cls.max_body),
            page_size=_int(env, "HERALD_PAGE_SIZE", cls.page_size),
            max_page_size=_int(env, "HERALD_MAX_PAGE_SIZE", cls.max_page_size),
            plugin_settings=Path(settings_file) if settings_file else None,
            fields_file=Path(fields_file) if fields_file else None,
            idempotency_hours=_int(env, "HERALD_IDEMPOTENCY_HOURS", cls.idempotency_hours),
        )

    def with_database(self, url: str) -> Settings:
        """The same settings on another database."""
        return replace(self, database_url=url)

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password masked (what may be printed or logged)."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)
