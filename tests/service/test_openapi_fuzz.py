"""Schemathesis against the app's own OpenAPI: generated requests to every operation never get a 5xx.

Bounded (a few examples per operation) so it runs in CI time; SQLite in a temp folder, one org whose admin
key (every role) authenticates the generated requests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS
from service.http.app import create_app
from service.settings import Settings
from service.storage.db import make_engine, migrate, transaction
from service.storage.keys import create_org

FIELDS = Path(__file__).resolve().parents[2] / "rules" / "fields.yaml"


def _app_and_key():
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='herald-fuzz-')) / 'h.db'}"
    migrate(url)
    engine = make_engine(url)
    with transaction(engine) as s:
        _, _, key = create_org(s, "fuzz")
    herald = Herald.build(DEFAULT_PLUGINS, settings={}, fields_file=FIELDS, entry_points=False)
    return create_app(Settings(database_url=url, max_body=256 * 1024), herald, engine=engine), key


APP, KEY = _app_and_key()
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case):
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    case.validate_response(response, checks=(not_a_server_error,))
