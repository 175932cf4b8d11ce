"""Engine configuration: plugin settings files with secrets from the environment, field catalogues."""

from __future__ import annotations

import pytest

from engine.errors import ValidationFailed
from engine.runtime import Herald, find_fields_file, load_settings
from plugins import DEFAULT_PLUGINS
from tests.conftest import EXAMPLES, RULES


def test_settings_reach_the_plugin_that_owns_them(tmp_path, monkeypatch):
    path = tmp_path / "herald.yaml"
    path.write_text("plugins:\n  plugins.channels.sms:\n    max_segments: 2\n    optout_text: $env:OPTOUT\n")
    monkeypatch.setenv("OPTOUT", "STOP to 5566")
    monkeypatch.setenv("HERALD_SETTINGS", str(path))
    sms = Herald.build(DEFAULT_PLUGINS, entry_points=False).registry.channel("sms")
    assert sms.max_segments == 2 and sms.tags["optout"] == "STOP to 5566"


def test_missing_secrets_and_bad_shapes_are_errors_with_places(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    path = tmp_path / "herald.yaml"
    path.write_text("plugins:\n  plugins.channels.sms:\n    token: $env:NOPE\n  other: 3\n")
    with pytest.raises(ValidationFailed) as info:
        load_settings(path)
    msgs = [str(p) for p in info.value.problems]
    assert msgs[0].startswith(f"{path}:3:5: plugins.plugins.channels.sms.token: environment variable NOPE is not set")
    assert "a plugin's settings are a mapping" in msgs[1]


def test_the_nearest_fields_file_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("HERALD_FIELDS", raising=False)
    assert find_fields_file(EXAMPLES / "personalization.yaml") == RULES / "fields.yaml"
    monkeypatch.setenv("HERALD_FIELDS", str(tmp_path / "f.yaml"))
    assert find_fields_file(EXAMPLES) == tmp_path / "f.yaml"
