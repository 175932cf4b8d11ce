"""Service fixtures: the app over a real, migrated database — SQLite always, PostgreSQL when reachable.

PostgreSQL: ``HERALD_TEST_POSTGRES`` (a URL; ``.ci/run`` sets it, and then an unreachable server fails the
run), else ``postgresql://postgres@127.0.0.1:5432/test`` when it answers. Each test session works in a
schema of its own, dropped at the end. Without PostgreSQL only SQLite runs, and the summary says so.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS
from service.http.app import create_app
from service.settings import Settings
from service.storage.db import make_engine, migrate, transaction
from service.storage.keys import create_org, issue_key
from service.storage.tables import User

ROOT = Path(__file__).resolve().parents[2]
#: the key the test apps seal webhook secrets with (a PostgreSQL deployment must configure one)
TEST_SECRET_KEYS = ("kPzZ8sB7cX3sRk1o3n0yq2bqk1cF7pQm2jK4rT9vW5E=",)
FIELDS = ROOT / "rules" / "fields.yaml"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
PG_ENV = "HERALD_TEST_POSTGRES"


def _reachable(url: str) -> bool:
    u = make_url(url)
    try:
        with socket.create_connection((u.host or "127.0.0.1", u.port or 5432), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_url() -> str | None:
    """The PostgreSQL to test against, or ``None`` (then only SQLite runs)."""
    url = os.environ.get(PG_ENV)
    if url:
        return url
    return DEFAULT_PG if _reachable(DEFAULT_PG) else None


def pytest_report_header(config: pytest.Config) -> str:
    url = postgres_url()
    return (f"service tests: SQLite and PostgreSQL ({make_url(url).render_as_string(hide_password=True)})" if url else
            "service tests: SQLite only — no PostgreSQL at 127.0.0.1:5432 (set HERALD_TEST_POSTGRES to test one)")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if postgres_url() is None:
        terminalreporter.write_line("service tests ran on SQLite only: no PostgreSQL was reachable", yellow=True)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file, or a fresh schema in the test PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'herald.db'}"
        migrate(url)
        yield url
        return
    base = postgres_url()
    if base is None:
        pytest.skip("no PostgreSQL reachable (SQLite only)")
    schema = f"herald_test_{secrets.token_hex(4)}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def herald() -> Herald:
    """The engine over the built-in plugins and the sample field catalogue."""
    return Herald.build(DEFAULT_PLUGINS, settings={}, fields_file=FIELDS, entry_points=False)


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Engine]:
    """The SQLAlchemy engine of the test database."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app(database_url: str, db_engine: Engine, herald: Herald):
    """The app over the test database."""
    return create_app(Settings(database_url=database_url, max_body=2 * 1024 * 1024, secret_keys=TEST_SECRET_KEYS),
                      herald, engine=db_engine)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """An HTTP client of the app (no network)."""
    with TestClient(app) as c:
        yield c


@dataclass
class OrgKeys:
    """A fresh org and a key per role: ``headers("marketer")`` authenticates as its marketer."""

    org_id: int
    keys: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, who: str = "marketer", **extra: str) -> dict[str, str]:
        """Request headers authenticating as ``who`` (admin, marketer, marketer2, approver, approver2, service)."""
        return {"Authorization": f"Bearer {self.keys[who]}", **extra}


def make_org(engine: Engine, name: str | None = None) -> OrgKeys:
    """A new org with an admin, two marketers, two approvers and a service user, each with a key."""
    with transaction(engine) as s:
        org, admin, key = create_org(s, name or f"org-{secrets.token_hex(3)}")
        assert org.id is not None and admin.id is not None
        out = OrgKeys(org.id, {"admin": key}, {"admin": admin.id})
        for who, roles in [("marketer", "marketer"), ("marketer2", "marketer"), ("approver", "approver"),
                           ("approver2", "approver"), ("service", "service")]:
            user = User(org_id=org.id, name=who, roles=roles)
            s.add(user)
            s.flush()
            assert user.id is not None
            _, out.keys[who] = issue_key(s, user)
            out.user_ids[who] = user.id
    return out


@pytest.fixture
def org(db_engine: Engine) -> OrgKeys:
    """A fresh org (tests never share data)."""
    return make_org(db_engine)


@pytest.fixture
def other_org(db_engine: Engine) -> OrgKeys:
    """A second org, to prove isolation."""
    return make_org(db_engine)
