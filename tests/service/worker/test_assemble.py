"""A worker from the settings: the transports file (every kind, the log default for the rest), its errors
naming the file and the field, and the limits taken from ``HERALD_*``."""

from __future__ import annotations

import pytest

from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS
from service.settings import Settings, SettingsError
from service.storage.db import make_engine
from service.worker.ad_exports import AdExportTransport
from service.worker.assemble import build_worker
from service.worker.outbox import LogTransport
from service.worker.tasks import TaskTransport
from service.worker.transports.smpp import SmppTransport
from service.worker.transports.smtp import SmtpTransport
from service.worker.transports.twilio import TwilioTransport

TRANSPORTS = """\
sms: {kind: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: "$env:TEST_TWILIO_TOKEN", from: HERALD}
email: {kind: smtp, host: 127.0.0.1, port: 2525}
whatsapp: {kind: smpp, host: 127.0.0.1, port: 2775, system_id: herald, password: secret}
"""


@pytest.fixture
def herald():
    return Herald.build(DEFAULT_PLUGINS, settings={}, entry_points=False)


def worker(tmp_path, herald, text: str | None, **env: str):
    settings = Settings.from_env({"HERALD_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}", **env})
    if text is not None:
        (tmp_path / "transports.yaml").write_text(text)
        settings = Settings.from_env({**env, "HERALD_TRANSPORTS": str(tmp_path / "transports.yaml")})
    return build_worker(settings, herald, make_engine(settings.database_url))


def test_each_channel_gets_its_configured_transport_and_the_log_default_takes_the_rest(tmp_path, herald,
                                                                                          monkeypatch):
    monkeypatch.setenv("TEST_TWILIO_TOKEN", "s3cr3t-twilio")
    ctx = worker(tmp_path, herald, TRANSPORTS, HERALD_DEFAULT_TRANSPORT="log", HERALD_CHUNK_SIZE="250",
                 HERALD_RATE_LIMITS="sms=20, email=100", HERALD_WORKER_ID="w7")
    try:
        t = ctx.transports
        assert isinstance(t["sms"], TwilioTransport) and isinstance(t["email"], SmtpTransport)
        assert isinstance(t["whatsapp"], SmppTransport)
        assert isinstance(t["push"], LogTransport) and isinstance(t["line"], LogTransport)
        assert "ads_meta" not in t and not any(name.startswith("ads") for name in t)  # exports, not sends
        assert ctx.limits.chunk_size == 250 and ctx.limits.rates == {"sms": 20.0, "email": 100.0}
        assert ctx.limits.batch_for("sms") == 2 and ctx.limits.batch_for("push") == ctx.limits.batch_size
        assert ctx.name == "w7"
        assert "s3cr3t-twilio" not in repr(t["sms"].__dict__)
    finally:
        ctx.close()


def test_without_a_default_a_channel_without_transport_has_none(tmp_path, herald):
    ctx = worker(tmp_path, herald, None, HERALD_EXPORT_DIR=str(tmp_path / "out"))
    try:
        # direct channels' sends fail with "no transport configured for channel …"; call tasks and ad exports
        # are Herald's own: they always have a home
        assert set(ctx.transports) == {"call_task", "facebook", "instagram", "google", "youtube"}
        assert isinstance(ctx.transports["call_task"], TaskTransport)
        ads = ctx.transports["facebook"]
        assert isinstance(ads, AdExportTransport) and ads.export_dir == tmp_path / "out"
    finally:
        ctx.close()


def test_the_transports_file_may_send_call_tasks_elsewhere(tmp_path, herald):
    ctx = worker(tmp_path, herald, "call_task: {kind: log}\ngoogle: {kind: log}\n")
    try:
        assert isinstance(ctx.transports["call_task"], LogTransport)
        assert isinstance(ctx.transports["google"], LogTransport)
        assert isinstance(ctx.transports["youtube"], AdExportTransport)
        assert ctx.transports["youtube"].export_dir == Settings().export_dir  # type: ignore[attr-defined]
    finally:
        ctx.close()


@pytest.mark.parametrize(("text", "message"), [
    ("sms: {kind: pigeon}", "transports.sms.kind: unknown transport kind 'pigeon'"),
    ("fax: {kind: log}", "no channel named fax"),
    ("sms: {kind: twilio, account_sid: AC0123456789abcdef0123456789abcdef}", "transports.sms.auth_token"),
    ("sms: [1, 2]", "must map each channel to its settings"),
    ("sms: {kind: twilio\n", "is not valid YAML"),
])
def test_a_bad_transports_file_is_refused_naming_the_file_and_the_field(tmp_path, herald, text, message):
    with pytest.raises(SettingsError, match="HERALD_TRANSPORTS") as err:
        worker(tmp_path, herald, text)
    assert message in str(err.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("HERALD_RATE_LIMITS", "sms", "not channel=messages-per-second"),
    ("HERALD_RATE_LIMITS", "sms=0", "not channel=messages-per-second"),
    ("HERALD_DEFAULT_TRANSPORT", "smtp", "must be one of log"),
    ("HERALD_SCHEDULER_POLL", "soon", "number of seconds"),
    ("HERALD_DBOS_SCHEMA", "dbos; drop", "plain SQL name"),
    ("HERALD_CHUNK_SIZE", "0", "must be positive"),
])
def test_bad_worker_settings_are_refused_naming_the_variable(name, value, message):
    with pytest.raises(SettingsError, match=name) as err:
        Settings.from_env({name: value})
    assert message in str(err.value)


def test_channels_naming_one_provider_share_its_queue_and_its_rate(tmp_path, herald, monkeypatch):
    monkeypatch.setenv("TEST_TWILIO_TOKEN", "s3cr3t-twilio")
    text = TRANSPORTS.replace("from: HERALD}", "from: HERALD, provider: twilio-main}") + \
        "push: {kind: log, provider: twilio-main}\n"
    ctx = worker(tmp_path, herald, text, HERALD_RATE_LIMITS="twilio-main=30,email=100")
    try:
        limits = ctx.limits
        assert limits.providers == {"sms": "twilio-main", "push": "twilio-main"}
        assert limits.queue_key("sms") == limits.queue_key("push") == "provider:twilio-main"
        assert limits.queue_key("email") == "email" and limits.rate_for("email") == 100
        assert limits.rate_for("provider:twilio-main") == 30 and limits.batch_for("sms") == 3
        assert isinstance(ctx.transports["sms"], TwilioTransport)  # `provider` is not a transport option
    finally:
        ctx.close()
    with pytest.raises(SettingsError, match="HERALD_RATE_LIMITS: nexmo is neither a channel nor a provider"):
        worker(tmp_path, herald, text, HERALD_RATE_LIMITS="nexmo=5")
    with pytest.raises(SettingsError, match="transports.sms.provider"):
        worker(tmp_path, herald, "sms: {kind: log, provider: 'a b'}")
