"""Webhook secrets are sealed in the database: encrypted under a key the database does not hold, opened with
any configured key (rotation), refused without one on PostgreSQL, and on SQLite under a key file of its own."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet
from litestar.testing import TestClient
from sqlmodel import select

from service.http.app import create_app
from service.settings import Settings, SettingsError
from service.storage.db import is_sqlite, make_engine, migrate, transaction
from service.storage.sealing import Sealer, SealingError, key_file, sealer_for
from service.storage.tables import WebhookSecret
from tests.service.conftest import TEST_SECRET_KEYS, make_org
from tests.service.test_messages_support import API

SECRET = "org-webhook-secret-0123456789"


def _stored(db_engine, org_id: int) -> str:
    with transaction(db_engine) as s:
        return s.exec(select(WebhookSecret.secret).where(WebhookSecret.org_id == org_id)).one()


def _put(client: TestClient, org, secret: str = SECRET):
    return client.put(f"{API}/org/webhooks/herald", json={"secret": secret}, headers=org.headers("admin"))


def test_a_stored_secret_is_sealed_and_still_checks_signatures(client, db_engine, org):
    assert _put(client, org).status_code == 204
    stored = _stored(db_engine, org.org_id)
    assert stored.startswith("fernet:") and SECRET not in stored
    assert Sealer(TEST_SECRET_KEYS).unseal(stored) == SECRET
    # another key (a copy of the database somewhere else) does not open it
    with pytest.raises(SealingError, match="does not open"):
        Sealer([Fernet.generate_key().decode()]).unseal(stored)


def test_keys_rotate_the_new_one_seals_and_the_old_one_still_opens():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_before = Sealer([old]).seal(SECRET)
    rotated = Sealer([new, old])
    assert rotated.unseal(sealed_before) == SECRET
    assert Sealer([new]).unseal(rotated.seal(SECRET)) == SECRET
    assert Sealer([]).unseal("a-secret-stored-before-sealing") == "a-secret-stored-before-sealing"


def test_a_bad_key_names_the_variable_and_never_echoes_it():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"HERALD_SECRET_KEY": f"{Fernet.generate_key().decode()},not-a-key-xyz"})
    assert "HERALD_SECRET_KEY: key 2 of 2 is not a Fernet key" in str(err.value)
    assert "not-a-key-xyz" not in str(err.value)
    assert Settings.from_env({"HERALD_SECRET_KEY": f" {TEST_SECRET_KEYS[0]} "}).secret_keys == TEST_SECRET_KEYS


def test_without_a_key_postgresql_refuses_to_store_a_secret_and_changes_nothing(database_url, db_engine, herald):
    if is_sqlite(database_url):
        pytest.skip("a SQLite database has a key file of its own")
    org = make_org(db_engine)
    app = create_app(Settings(database_url=database_url), herald, engine=db_engine)
    with TestClient(app) as client:
        r = _put(client, org)
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert "HERALD_SECRET_KEY" in r.json()["detail"]
    with transaction(db_engine) as s:
        assert s.exec(select(WebhookSecret).where(WebhookSecret.org_id == org.org_id)).first() is None


def test_a_secret_sealed_under_a_key_this_deployment_lacks_is_refused_naming_the_variable(db_engine, org, client):
    assert _put(client, org).status_code == 204
    stranger = Sealer([Fernet.generate_key().decode()])
    with transaction(db_engine) as s:
        row = s.exec(select(WebhookSecret).where(WebhookSecret.org_id == org.org_id)).one()
        row.secret = stranger.seal(SECRET)
        s.add(row)
    from service.storage.receipts import secrets_of

    with transaction(db_engine) as s, pytest.raises(SealingError, match="HERALD_SECRET_KEY"):
        secrets_of(s, [org.org_id], "herald", Sealer(TEST_SECRET_KEYS))


def test_sqlite_makes_its_own_key_file_once_readable_by_its_owner_only(tmp_path, herald):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    migrate(url)
    path = tmp_path / "h.db.key"
    assert key_file(url) == path
    assert not path.exists()
    first = sealer_for(url)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = first.seal(SECRET)
    assert sealer_for(url).unseal(sealed) == SECRET  # a second process finds the same key
    assert key_file("postgresql://db/h") is None and key_file("sqlite://") is None
    with pytest.raises(SealingError, match="no key"):
        sealer_for("postgresql://db/h").seal(SECRET)
    engine = make_engine(url)
    org = make_org(engine)
    with TestClient(create_app(Settings(database_url=url), herald, engine=engine)) as client:
        assert _put(client, org).status_code == 204
    assert sealer_for(url).unseal(_stored(engine, org.org_id)) == SECRET
    path.write_text("garbage")
    with pytest.raises(SealingError, match="h.db.key: key 1 of 1 is not a Fernet key"):
        sealer_for(url)
    engine.dispose()
