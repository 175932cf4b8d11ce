"""Hostile data cannot drive the terminal, and user mistakes exit 2 with the path and what to do."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from service.cli import app, safe
from tests.conftest import EXAMPLES, ROOT, RULES

runner = CliRunner()
MESSAGE = str(EXAMPLES / "summer-sale.message.yaml")
AUDIENCE = str(EXAMPLES / "audience.csv")
AT = "2026-07-04T13:30:00+00:00"
HOSTILE_ID = "[bold red]boom[/]\x1b[2J\x07\x9b2J\u202e:smile:"


def run(*args, **kw):
    return runner.invoke(app, list(args), catch_exceptions=False, **kw)


@pytest.fixture
def hostile(tmp_path):
    """An audience whose id and values carry rich markup, ANSI escapes and C1 controls."""
    path = tmp_path / "hostile.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "tier", "phone", "last_purchase_date", "affinities", "first_name"])
        w.writerow([HOSTILE_ID, "gold\x1b[31m", "+919881924865", "2026-05-01", "[b]x[/b]|\x9b2J", "[link=http://x]a[/link]"])
    return path


def no_raw_controls(text: str) -> bool:
    return not any(c in text for c in ("\x1b", "\x07", "\x9b", "\u202e"))


def test_safe_shows_control_characters_escaped_and_keeps_ordinary_text():
    assert safe("a\x1b[2Jb\x07\x9b\u202e\nc") == "a\\x1b[2Jb\\x07\\x9b\\u202e\\x0ac"
    assert safe("Müller [gold] 東京 :smile:") == "Müller [gold] 東京 :smile:"


def test_a_hostile_customer_id_is_printed_escaped_in_the_table(hostile):
    result = run("evaluate", "-m", MESSAGE, "-a", str(hostile), "--at", AT, "--explain",
                 env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert no_raw_controls(result.stdout)
    assert "[bold red]boom[/]\\x1b[2J\\x07\\x9b2J\\u202e:smile:" in result.stdout  # markup and emoji codes shown as written


def test_hostile_values_are_escaped_in_explain(hostile):
    result = run("explain", "-m", MESSAGE, "-a", str(hostile), "-c", HOSTILE_ID, "--at", AT, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert no_raw_controls(result.stdout)
    assert '(seen: "gold\\u001b[31m")' in result.stdout  # the fact value as a JSON literal, escaped
    assert '["[b]x[/b]", "\\u009b2J"]' in result.stdout
    assert "customer [bold red]boom[/]\\x1b[2J\\x07\\x9b2J\\u202e:smile:" in result.stdout


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_machine_output_escapes_controls_and_keeps_the_data(hostile, fmt):
    result = run("evaluate", "-m", MESSAGE, "-a", str(hostile), "--at", AT, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert no_raw_controls(result.stdout)
    first = json.loads(result.stdout) if fmt == "json" else json.loads(result.stdout.splitlines()[0])
    decision = first["decisions"][0] if fmt == "json" else first
    assert decision["customer"] == HOSTILE_ID  # the exact id survives a JSON round trip


def test_hostile_text_in_an_error_is_escaped(tmp_path):
    bad = tmp_path / "aud.csv"
    bad.write_text("id,points\nc1,[bold]x\x1b[2J\n")
    result = run("evaluate", "-m", MESSAGE, "-a", str(bad), "--at", AT)
    assert result.exit_code == 2
    assert no_raw_controls(result.stderr) and "[bold]x" in result.stderr


# --- user mistakes: exit 2, the path, what to do, no traceback --------------------------------------------


def assert_user_error(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.stderr, result.stderr


def test_a_missing_herald_fields_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, env={"HERALD_FIELDS": str(missing)})
    assert_user_error(result, f"HERALD_FIELDS={missing}: no such file; set HERALD_FIELDS to the org's fields.yaml")


def test_a_folder_as_herald_fields(tmp_path):
    result = run("rules", "check", str(EXAMPLES / "eligibility.yaml"), env={"HERALD_FIELDS": str(tmp_path)})
    assert_user_error(result, f"HERALD_FIELDS={tmp_path}: is a folder")


def test_a_missing_herald_settings_file(tmp_path):
    missing = tmp_path / "settings.yaml"
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, env={"HERALD_SETTINGS": str(missing)})
    assert_user_error(result, f"HERALD_SETTINGS={missing}: no such file")


def test_a_folder_given_as_the_message(tmp_path):
    assert_user_error(run("evaluate", "-m", str(tmp_path), "-a", AUDIENCE, "--at", AT),
                      f"{tmp_path}: is a folder; give the message file")
    assert_user_error(run("message", "check", str(tmp_path)), f"{tmp_path}: is a folder; give the message file")


def test_a_folder_given_as_the_audience(tmp_path):
    assert_user_error(run("evaluate", "-m", MESSAGE, "-a", str(tmp_path), "--at", AT),
                      f"{tmp_path}: is a folder; give the audience file")
    assert_user_error(run("explain", "-m", MESSAGE, "-a", str(tmp_path), "-c", "c1", "--at", AT),
                      f"{tmp_path}: is a folder; give the audience file")


def test_a_missing_message_or_rule_file(tmp_path):
    assert_user_error(run("evaluate", "-m", str(tmp_path / "m.yaml"), "-a", AUDIENCE),
                      f"{tmp_path / 'm.yaml'}: no such file; give the message file")
    assert_user_error(run("rules", "check", str(tmp_path / "r.yaml")), f"{tmp_path / 'r.yaml'}: no such file")


def test_a_folder_as_output(tmp_path):
    assert_user_error(run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "-o", str(tmp_path)),
                      f"{tmp_path}: is a folder; give --output a file name")


def test_an_unreadable_file_is_a_user_error(tmp_path, monkeypatch):
    shutil.copy(EXAMPLES / "audience.csv", tmp_path / "a.csv")
    target = tmp_path / "a.csv"

    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr("engine.audience.read_audience", denied)
    monkeypatch.setattr("engine.columnar.read_frame", denied)
    assert_user_error(run("evaluate", "-m", MESSAGE, "-a", str(target), "--at", AT),
                      f"{target}: permission denied; make the file readable")


def test_a_settings_file_with_problems_is_reported_against_it(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("plugins: [1, 2]\n")
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, env={"HERALD_SETTINGS": str(settings)})
    assert_user_error(result, str(settings))
    assert all(line.startswith(str(settings)) for line in result.stderr.splitlines() if line.strip())


def test_org_fields_with_problems_are_reported_against_the_file(tmp_path):
    shutil.copytree(EXAMPLES, tmp_path / "ex")
    (tmp_path / "fields.yaml").write_text("customer:\n  tier: {type: strnig}\n")
    shutil.copy(RULES / "fields.yaml", tmp_path / "unused.yaml")
    result = run("message", "check", str(tmp_path / "ex" / "summer-sale.message.yaml"))
    assert_user_error(result, f"{tmp_path / 'fields.yaml'}: customer.tier.type: type must be one of")


def test_a_plugin_that_cannot_be_imported_is_a_user_error(monkeypatch):
    class Broken:
        name = "broken"

        def load(self):
            raise ModuleNotFoundError("No module named 'herald_broken'", name="herald_broken")

    monkeypatch.setattr("engine.plugin_manager._entry_points", lambda group: [Broken()])
    assert_user_error(run("rules", "check", str(EXAMPLES / "eligibility.yaml")),
                      "herald: a plugin could not be imported (No module named 'herald_broken')",
                      "HERALD_DISABLE_PLUGINS")


def test_a_reader_that_goes_away_is_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT,
                             "--format", "ndjson", "--explain", "--render"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout.readline().startswith(b'{"customer"')
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 1
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
