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


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = env.get(name) or None
    if raw is not None and raw not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
    return raw


def _identifier(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and not (raw.replace("_", "a").isalnum() and raw.isascii() and not raw[0].isdigit()
                                and len(raw) <= 63):
        raise SettingsError(f"{name} must be a plain SQL name (letters, digits, _), not {raw!r}")
    return raw


def _public_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"HERALD_PUBLIC_URL must be an http(s) address such as https://herald.example.com, "
                            f"not {raw!r}")
    return raw.rstrip("/")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0.01 <= value <= 3600:
        raise SettingsError(f"{name} must be between 0.01 and 3600 seconds, not {value}")
    return value


def _secret_keys(raw: str) -> tuple[str, ...]:
    """The Fernet keys that seal secrets stored in the database (never shown in an error)."""
    from service.storage.sealing import check_keys

    try:
        return check_keys(raw)
    except ValueError as exc:
        raise SettingsError(f"HERALD_SECRET_KEY: {exc}") from None


def _rates(raw: str) -> dict[str, float]:
    """``sms=50,email=200`` → ``{"sms": 50.0, "email": 200.0}`` (messages per second, > 0)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        channel, sep, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not channel.strip() or not rate > 0:
            raise SettingsError(f"HERALD_RATE_LIMITS: {part!r} is not channel=messages-per-second (e.g. sms=50)")
        out[channel.strip()] = rate
    return out


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
    * ``transports_file`` (``HERALD_TRANSPORTS``): YAML or JSON, channel → ``{kind: smtp | twilio | smpp |
      fcm | line | viber | wechat | whatsapp | log | task | ad_export, …its options}``: how each channel reaches
      its provider (``task`` and ``ad_export`` are what call-task and ad channels get without an entry).
    * ``default_transport`` (``HERALD_DEFAULT_TRANSPORT``): ``log`` sends every channel without a transport
      to the outbox table (the demo); unset, such a channel's sends fail with "no transport configured".
    * ``chunk_size`` (``HERALD_CHUNK_SIZE``): recipients per queued chunk of a send run.
    * ``rate_limits`` (``HERALD_RATE_LIMITS``, ``sms=50,email=200``): messages per second per channel, held
      across every worker process.
    * ``worker_id`` (``HERALD_WORKER_ID``): this worker's name among all of them; a worker restarted with the
      same name takes back the work it was doing when it stopped (default: host name and process id).
    * ``scheduler_poll`` (``HERALD_SCHEDULER_POLL``, seconds): how often workers look for approved messages.
    * ``public_url`` (``HERALD_PUBLIC_URL``): the address recipients reach this service at; tiny URLs are
      ``{public_url}/t/{code}`` (a message with tiny URLs on cannot be sent without it).
    * ``dbos_schema`` (``HERALD_DBOS_SCHEMA``, PostgreSQL): the schema of DBOS's workflow and queue tables in
      Herald's database (default ``dbos``; one per Herald database that shares a PostgreSQL database).
    * ``secret_keys`` (``HERALD_SECRET_KEY``, Fernet keys, comma-separated, the first seals): the keys that
      seal the secrets kept in the database (:mod:`service.storage.sealing`); a SQLite database without them
      uses a key file beside it, PostgreSQL needs them to store a secret.
    * ``export_dir`` (``HERALD_EXPORT_DIR``, default ``./exports``): where ad channels' audience files are written
      (``<org>/<message>/<run>/<channel>.csv``); the API lists them from there, so workers and the API share it.
    """

    database_url: str = DEFAULT_DATABASE
    max_body: int = 50 * 1024 * 1024
    page_size: int = 100
    max_page_size: int = 1000
    plugin_settings: Path | None = None
    fields_file: Path | None = None
    idempotency_hours: int = 24
    transports_file: Path | None = None
    default_transport: str | None = None
    chunk_size: int = 500
    rate_limits: Mapping[str, float] = field(default_factory=dict)
    worker_id: str | None = None
    scheduler_poll: float = 1.0
    dbos_schema: str | None = None
    public_url: str | None = None
    export_dir: Path = Path("exports")
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
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
            transports_file=Path(env["HERALD_TRANSPORTS"]) if env.get("HERALD_TRANSPORTS") else None,
            default_transport=_choice(env, "HERALD_DEFAULT_TRANSPORT", ("log",)),
            chunk_size=_int(env, "HERALD_CHUNK_SIZE", cls.chunk_size),
            rate_limits=_rates(env.get("HERALD_RATE_LIMITS") or ""),
            worker_id=env.get("HERALD_WORKER_ID") or None,
            scheduler_poll=_seconds(env, "HERALD_SCHEDULER_POLL", cls.scheduler_poll),
            dbos_schema=_identifier(env, "HERALD_DBOS_SCHEMA"),
            public_url=_public_url(env.get("HERALD_PUBLIC_URL") or None),
            export_dir=Path(env.get("HERALD_EXPORT_DIR") or "exports"),
            secret_keys=_secret_keys(env.get("HERALD_SECRET_KEY") or ""),
        )

    def with_database(self, url: str) -> Settings:
        """The same settings on another database."""
        return replace(self, database_url=url)

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password masked (what may be printed or logged)."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)
