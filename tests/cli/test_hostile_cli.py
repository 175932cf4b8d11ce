"""Hostile and mistaken files through the CLI: exit 2, every error line starting with the file at fault (or the
variable), no traceback; plugin-list typos are warnings; the durable limit leaves the other evaluators working."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import EXAMPLES, RULES

runner = CliRunner()
AT = "2026-07-04T13:30:00+00:00"


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


@pytest.fixture
def camp(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the sample campaign (message, rules, audience) with the sample fields.yaml beside it."""
    for var in ("HERALD_SETTINGS", "HERALD_FIELDS", "HERALD_MAX_FILE_BYTES", "HERALD_RULES_ROOT", "HERALD_PLUGINS",
                "HERALD_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    shutil.copytree(EXAMPLES, tmp_path / "camp")
    shutil.copy(RULES / "fields.yaml", tmp_path / "camp" / "fields.yaml")
    return tmp_path / "camp"


def message(camp: Path) -> Path:
    return camp / "summer-sale.message.yaml"


def append(path: Path, text: str) -> Path:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")
    return path


def errors(result, *starts: str | Path) -> list[str]:
    """The error lines of a refused command, each checked to start with one of ``starts``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error:" not in result.output, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert lines, result.output
    for line in lines:
        assert line.startswith(tuple(str(s) for s in starts)), line
    return lines


def check(camp: Path, **env: str):
    return run("message", "check", str(message(camp)), env=env or None)


# --- hostile YAML -------------------------------------------------------------------------------------------


def test_an_alias_in_a_message_file(camp):
    lines = errors(run("message", "check", str(append(message(camp), "x: &a [1]\n"))), message(camp))
    assert any("YAML aliases are not allowed (anchor &a)" in ln for ln in lines)


def test_an_alias_in_a_rule_file_is_reported_at_the_rule_file(camp):
    rule = append(camp / "eligibility.yaml", "x: &a 1\n")
    lines = errors(check(camp), message(camp), rule)
    assert lines[0].startswith(str(message(camp)))
    assert any(ln.startswith(f"{rule}:") and "YAML aliases are not allowed" in ln for ln in lines)


def test_an_alias_in_the_settings_file(camp):
    settings = camp / "settings.yaml"
    settings.write_text("plugins: &p {}\n")
    lines = errors(check(camp, HERALD_SETTINGS=str(settings)), settings)
    assert any("YAML aliases are not allowed" in ln for ln in lines)


def test_a_file_over_the_size_limit(camp):
    append(message(camp), "#" + "x" * (1024 * 1024) + "\n")
    lines = errors(check(camp), message(camp))
    assert any("over the limit of 1,048,576 bytes (HERALD_MAX_FILE_BYTES)" in ln for ln in lines)


def test_a_small_size_limit_names_the_first_file_over_it(camp):
    fields = camp / "fields.yaml"
    lines = errors(check(camp, HERALD_MAX_FILE_BYTES="100"), fields)
    assert any("over the limit of 100 bytes" in ln for ln in lines)


def test_an_invalid_size_limit_names_the_variable(camp):
    (line,) = errors(check(camp, HERALD_MAX_FILE_BYTES="1MB"), "HERALD_MAX_FILE_BYTES=1MB:")
    assert "a positive whole number of bytes" in line


def test_nesting_too_deep(camp):
    append(message(camp), "x: " + "[" * 100 + "]" * 100 + "\n")
    lines = errors(check(camp), message(camp))
    assert any("nested deeper than the limit of 64 levels" in ln for ln in lines)


def test_an_impossible_date(camp):
    path = message(camp)
    path.write_text(path.read_text(encoding="utf-8").replace("starts: 2026-06-01", "starts: 2026-13-01"))
    lines = errors(check(camp), path)
    assert any("not a valid date: 2026-13-01" in ln for ln in lines)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['true']", "!!binary aGVsbG8="])
def test_tags_that_build_other_types(camp, tag):
    lines = errors(run("message", "check", str(append(message(camp), f"x: {tag}\n"))), message(camp))
    assert any("is not allowed" in ln for ln in lines)


# --- rules ----------------------------------------------------------------------------------------------------


def test_a_rule_path_outside_the_rules_root(camp):
    path = message(camp)
    path.write_text(path.read_text(encoding="utf-8").replace("eligibility: eligibility.yaml",
                                                             "eligibility: ../../../etc/passwd"))
    lines = errors(check(camp), path)
    assert any("is outside the message's folder" in ln and "HERALD_RULES_ROOT" in ln for ln in lines)


def test_a_regex_re2_cannot_run(camp):
    rule = camp / "eligibility.yaml"
    text = rule.read_text(encoding="utf-8").replace(
        "  - id: dormant\n",
        "  - id: odd\n    priority: 15\n    when: {field: customer.first_name, matches: '(a)\\1'}\n"
        "    then: {exclude: odd}\n  - id: dormant\n")
    rule.write_text(text, encoding="utf-8")
    lines = errors(run("rules", "check", str(rule)), rule)
    assert any("backreferences are not supported" in ln and "RE2" in ln for ln in lines)


def test_a_ruleset_too_big_for_durable_is_refused_by_durable_only(camp):
    rules = "".join(f"  - id: r{i}\n    priority: {i + 1}\n    when: {{field: customer.tier, eq: t{i}}}\n"
                    f"    then: {{exclude: x{i}}}\n" for i in range(520))
    (camp / "eligibility.yaml").write_text(f"ruleset: big\nkind: eligibility\nhit_policy: first\nrules:\n{rules}")
    args = ("evaluate", "-m", str(message(camp)), "-a", str(camp / "audience.csv"), "--at", AT, "--summary")
    (line,) = errors(run(*args, "--evaluator", "durable"), message(camp))
    assert "520 alternatives, over durable's limit of 500" in line and "use the compiled evaluator" in line
    compiled = run(*args)
    assert compiled.exit_code == 0, compiled.output
    assert "200 recipients" in compiled.stdout


# --- plugins --------------------------------------------------------------------------------------------------


def test_a_typo_in_the_disable_list_is_a_warning_and_the_command_runs(camp):
    result = check(camp, HERALD_DISABLE_PLUGINS="plugins.channels.smss")
    assert result.exit_code == 0, result.output
    assert ("warning: HERALD_DISABLE_PLUGINS: no installed plugin is named 'plugins.channels.smss' "
            "(did you mean 'plugins.channels.sms'?)") in result.stderr
    assert result.stderr.count("HERALD_DISABLE_PLUGINS") == 1


def test_disabling_a_plugin_the_message_needs_names_both(camp):
    lines = errors(check(camp, HERALD_DISABLE_PLUGINS="plugins.channels.sms"), message(camp))
    assert "needs a plugin that HERALD_PLUGINS or HERALD_DISABLE_PLUGINS leaves out" in lines[0]
    assert any("channel 'sms' is registered by plugin 'plugins.channels.sms', which HERALD_DISABLE_PLUGINS "
               "disables" in ln for ln in lines)
    assert not any("unknown channel" in ln for ln in lines)


def test_a_bad_channel_setting_is_plain(camp):
    settings = camp / "settings.yaml"
    settings.write_text("plugins:\n  plugins.channels.sms: {cost: abc}\n")
    (line,) = errors(check(camp, HERALD_SETTINGS=str(settings)), settings)
    assert line == f"{settings}: plugins.plugins.channels.sms: cost: must be a number ≥ 0, not 'abc'"
