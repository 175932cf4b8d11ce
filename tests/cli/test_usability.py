"""The CLI a marketer can live in: help, version, output files, table limits, message and rule checks."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from importlib.metadata import version

import pytest
from rich.console import Console
from typer.testing import CliRunner

import service.cli as cli
from engine.evaluators import EVALUATORS
from service.cli import app
from tests.conftest import EXAMPLES, ROOT, RULES

runner = CliRunner()
MESSAGE = str(EXAMPLES / "summer-sale.message.yaml")
AUDIENCE = str(EXAMPLES / "audience.csv")
AT = "2026-07-04T13:30:00+00:00"


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def samples(tmp_path):
    """A copy of rules/ to edit (examples/ and fields.yaml); returns its examples folder."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    shutil.copy(RULES / "fields.yaml", tmp_path / "fields.yaml")
    return tmp_path / "examples"


def big_audience(path, n):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "tier", "phone", "last_purchase_date"])
        for i in range(n):
            w.writerow([f"c{i:05d}", "gold", f"+9198{i:08d}", "2026-05-01"])
    return path


# --- help and version -----------------------------------------------------------------------------------


def test_help_documents_choices_and_booleans_as_flags():
    result = run("evaluate", "--help")
    assert result.exit_code == 0
    assert "--format <table|json|ndjson>" in result.stdout
    assert "--evaluator NAME" in result.stdout and "compiled (default), reference, durable, columnar" in " ".join(
        result.stdout.split())
    assert "<bool>" not in result.stdout and "--no-explain" not in result.stdout
    assert "\n  --explain " in result.stdout and "\n  --summary " in result.stdout


def test_dash_h_is_help_everywhere():
    for args in (["-h"], ["evaluate", "-h"], ["rules", "check", "-h"], ["explain", "-h"], ["message", "check", "-h"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.stdout, args


def test_version_prints_the_installed_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"herald {version('herald')}"


def test_the_evaluator_help_names_the_built_in_evaluators():
    for name in EVALUATORS:
        assert name in cli.EVALUATOR_HELP


def test_an_unknown_evaluator_is_refused_with_the_registered_ones():
    for args in (("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT), ("rules", "test", str(EXAMPLES / "personalization.yaml"))):
        result = run(*args, "--evaluator", "nope")
        assert result.exit_code == 2, result.output
        assert "unknown evaluator 'nope'; registered: columnar, compiled, durable, reference" in result.output


class CountingEvaluator:
    """A plugin's evaluator: the compiled one, counting the rulesets it is asked about."""

    calls = 0

    def __init__(self):
        from engine.evaluators.compiled import CompiledEvaluator

        self.inner = CompiledEvaluator()

    def fired(self, ruleset, facts):
        CountingEvaluator.calls += 1
        return self.inner.fired(ruleset, facts)


class EvaluatorPlugin:
    """Registers ``counting`` through the same hook as the built-in evaluators."""

    @staticmethod
    def register_evaluators(register, settings):
        from engine.contracts import EvaluatorSpec

        register(EvaluatorSpec("counting", CountingEvaluator, "counts its calls"))


def test_an_evaluator_a_plugin_registers_is_accepted_by_the_cli(monkeypatch):
    import plugins
    from engine.hookspecs import hookimpl

    hookimpl(EvaluatorPlugin.register_evaluators)
    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", (*plugins.DEFAULT_PLUGINS, EvaluatorPlugin()))
    CountingEvaluator.calls = 0
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--evaluator", "counting", "--summary")
    assert result.exit_code == 0, result.output
    assert "200 recipients" in result.output and CountingEvaluator.calls >= 200
    CountingEvaluator.calls = 0
    result = run("rules", "test", str(EXAMPLES / "personalization.yaml"), "--evaluator", "counting")
    assert result.exit_code == 0, result.output
    assert CountingEvaluator.calls > 0


def test_a_wrong_choice_is_refused_with_the_choices():
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--format", "xml")
    assert result.exit_code == 2 and "'table', 'json', 'ndjson'" in result.output


def test_polars_is_imported_only_when_an_audience_is_read():
    """Start-up: listing plugins reads no frame and parses no template, so the two heaviest libraries stay
    unloaded (``engine.lazy``); checking a message parses its templates (liquid) but reads no audience;
    evaluating an audience loads polars."""
    code = ("import sys; from service.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('RESULT', code, 'polars' in sys.modules, 'liquid' in sys.modules, file=sys.stderr)")
    for args in (["plugins"], ["message", "check", MESSAGE], ["evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--summary"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
        result = proc.stderr.strip().splitlines()[-1].split()
        expected = {"plugins": ["RESULT", "0", "False", "False"], "message": ["RESULT", "0", "False", "True"],
                    "evaluate": ["RESULT", "0", "True", "True"]}[args[0]]
        assert result == expected, (args, proc.stderr)


def test_help_does_not_import_the_engine_or_polars():
    code = "import sys, service.cli; print('polars' in sys.modules, 'engine' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


# --- output size and files ------------------------------------------------------------------------------


def test_a_table_of_more_than_1000_rows_is_refused_with_the_alternatives(tmp_path):
    audience = big_audience(tmp_path / "big.csv", 1001)
    result = run("evaluate", "-m", MESSAGE, "-a", str(audience), "--at", AT)
    assert result.exit_code == 2
    assert (f"{audience}: 1,001 decisions are too many for a table (at most 1,000); "
            "use --summary, --format ndjson or --output FILE") in result.stderr
    assert result.stdout == ""
    assert run("evaluate", "-m", MESSAGE, "-a", str(audience), "--at", AT, "--summary").exit_code == 0
    just_enough = big_audience(tmp_path / "ok.csv", 1000)
    assert run("evaluate", "-m", MESSAGE, "-a", str(just_enough), "--at", AT).exit_code == 0


def test_a_large_table_goes_to_a_file_with_output(tmp_path):
    audience = big_audience(tmp_path / "big.csv", 1001)
    target = tmp_path / "out.txt"
    result = run("evaluate", "-m", MESSAGE, "-a", str(audience), "--at", AT, "--output", str(target))
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert "c00000" in text and "c01000" in text and "1001 recipients" in text
    assert "\x1b" not in text  # plain text, no colours


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson"])
def test_output_writes_every_format_to_the_file_and_nothing_to_stdout(tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", fmt, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {target}" in result.stderr
    stdout = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", fmt).stdout
    if fmt == "table":
        assert "200 recipients" in target.read_text()
    else:  # the same data as on stdout
        assert target.read_text() == stdout
    assert not list(tmp_path.glob("*.part"))


def test_a_failed_run_leaves_no_output_file(tmp_path):
    bad = tmp_path / "aud.csv"
    bad.write_text("id,points\nc1,three\n")
    target = tmp_path / "out.json"
    result = run("evaluate", "-m", MESSAGE, "-a", str(bad), "--at", AT, "--format", "json", "-o", str(target))
    assert result.exit_code == 2 and not target.exists()
    assert f"{bad}:2: points" in result.stderr


# --- progress -------------------------------------------------------------------------------------------


def test_progress_on_the_columnar_path_goes_to_a_terminal_stderr_only(monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_THRESHOLD", 0)
    plain = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", "ndjson", "--evaluator", "columnar")
    assert plain.exit_code == 0 and "evaluating" not in plain.stderr  # stderr is not a terminal: no progress
    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, markup=False, emoji=False))
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", "ndjson", "--evaluator", "columnar")
    assert result.exit_code == 0
    assert "evaluating" in screen.getvalue()
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # machine output stays clean
    assert len(lines) == 201 and result.stdout == plain.stdout


# --- herald plugins -------------------------------------------------------------------------------------


def test_plugins_lists_the_field_catalogue_with_types_and_origin(monkeypatch, samples):
    monkeypatch.chdir(samples)
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "300"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in result.stdout.splitlines() if line.count("│") == 5}
    fields = str(samples.parent / "fields.yaml")
    assert rows["customer.tier"] == ["string", fields, "loyalty tier: bronze, silver, gold, platinum"]
    assert rows["customer.lifetime_value"] == ["number", fields, "total spend"]
    assert rows["time.local_hour"][:2] == ["integer", "engine"]
    assert "plugins.channels.sms" in result.stdout


def test_plugins_lists_contact_fields_with_every_owning_plugin(monkeypatch, samples):
    monkeypatch.chdir(samples)
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "300"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listed = [tuple(c.strip() for c in line.split("│")[1:4]) for line in result.stdout.splitlines()
              if line.count("│") == 4]
    assert [row for row in listed if row[1] == "contact"] == [
        ("email", "contact", "plugins.channels.email"), ("email", "contact", "plugins.channels.ads"),
        ("line_id", "contact", "plugins.channels.line"), ("phone", "contact", "plugins.channels.sms"),
        ("phone", "contact", "plugins.channels.call_task"), ("phone", "contact", "plugins.channels.ads"),
        ("push_token", "contact", "plugins.channels.push"), ("viber_id", "contact", "plugins.channels.viber"),
        ("wechat_openid", "contact", "plugins.channels.wechat"), ("whatsapp", "contact", "plugins.channels.whatsapp")]
    fields = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
              for line in result.stdout.splitlines() if line.count("│") == 5}
    assert fields["customer.phone"] == ["string", "plugins.channels.sms, plugins.channels.call_task, "
                                        "plugins.channels.ads", "phone number, E.164"]


def test_plugins_takes_a_fields_file(tmp_path):
    fields = tmp_path / "f.yaml"
    fields.write_text("customer:\n  shoe_size: {type: integer, description: EU size}\n")
    result = run("plugins", "--fields", str(fields))
    assert result.exit_code == 0, result.output
    assert "customer.shoe_size" in result.stdout and "EU size" in result.stdout


# --- message check --------------------------------------------------------------------------------------


def test_message_check_validates_a_message_without_an_audience():
    result = run("message", "check", MESSAGE)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok {MESSAGE}: message summer-sale-2026, 3 creative(s)")


def test_message_check_prints_warnings_and_still_passes(samples):
    message = samples / "summer-sale.message.yaml"
    message.write_text(message.read_text().replace(", expiry: {days: 14}", ""))
    result = run("message", "check", str(message))
    assert result.exit_code == 0, result.output
    assert (f"warning: {message}: incentive.settings.expiry: the codes never expire; set a date, days or "
            "with_campaign") in result.stderr
    assert "2 warning(s)" in result.stdout


def test_message_check_lists_the_problems_each_line_starting_with_the_file(samples):
    message = samples / "summer-sale.message.yaml"
    message.write_text(message.read_text().replace("channel: email", "channel: emial"))
    result = run("message", "check", str(message))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith(str(message)) for line in lines), lines
    assert "emial" in result.stderr


# --- rules check / rules test ---------------------------------------------------------------------------


def test_rules_check_of_a_folder_skips_files_that_are_not_rule_files(samples):
    (samples / "summer-sale.message.yaml").rename(samples / "campaign.yaml")
    (samples / "settings.yaml").write_text("plugins: {}\n")
    (samples / "audience.json").write_text('[{"id": "c1"}]\n')
    result = run("rules", "check", str(samples.parent))
    assert result.exit_code == 0, result.output
    for path in (samples / "campaign.yaml", samples / "settings.yaml", samples / "audience.json",
                 samples.parent / "fields.yaml"):
        assert f"skipped {path}: not a rule file (no top-level 'ruleset' key)" in result.stdout
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") == 3


def test_rules_check_of_a_folder_still_reports_a_broken_file(samples):
    (samples / "broken.yaml").write_text("ruleset: [unclosed\n")
    result = run("rules", "check", str(samples))
    assert result.exit_code == 2
    assert f"skipped {samples / 'summer-sale.message.yaml'}: not a rule file" in result.stdout
    assert f"{samples / 'broken.yaml'}:2:1:" in result.stderr


def test_rule_errors_start_with_the_file_name(samples):
    bad = samples / "personalization.yaml"
    bad.write_text(bad.read_text().replace("time.local_hour", "time.local_hr").replace("customer.tier", "customer.tire"))
    result = run("rules", "check", str(bad))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) >= 3 and all(line.startswith(f"{bad}:") for line in lines), lines


def test_audience_errors_start_with_the_file_name(tmp_path):
    bad = tmp_path / "aud.csv"
    bad.write_text("id,points\nc1,3\nc2,three\n")
    result = run("evaluate", "-m", MESSAGE, "-a", str(bad), "--at", AT)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert lines and all(line.startswith(f"{bad}:") for line in lines), lines


def test_rules_test_counts_examples_not_expectations(samples):
    rules = samples / "personalization.yaml"
    # one example with two wrong expectations (fired and variant)
    rules.write_text(rules.read_text().replace("expect: {fired: [gold], variant: gold}",
                                               "expect: {fired: [default], variant: generic}"))
    result = run("rules", "test", str(rules))
    assert result.exit_code == 1
    assert "3 examples passed, 1 failed" in result.stdout
    assert result.stderr.count("FAIL") == 2  # both wrong expectations are still shown
    assert all(line.startswith(f"{rules}: FAIL") for line in result.stderr.splitlines() if line.strip())


def test_rules_test_of_the_samples_folder_counts_their_examples():
    result = run("rules", "test", str(RULES))
    assert result.exit_code == 0, result.output
    assert "9 examples passed, 0 failed" in result.stdout
    assert f"skipped {RULES / 'fields.yaml'}" in result.stdout


# --- warnings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["evaluate", "explain", "sample"])
def test_message_warnings_are_printed(samples, monkeypatch, command):
    message = samples / "summer-sale.message.yaml"
    message.write_text(message.read_text().replace(", expiry: {days: 14}", ""))
    args = {"evaluate": ["evaluate", "-m", str(message), "-a", AUDIENCE, "--at", AT, "--summary"],
            "explain": ["explain", "-m", str(message), "-a", AUDIENCE, "-c", "c0004", "--at", AT],
            "sample": ["sample"]}[command]
    monkeypatch.setattr(cli, "samples", lambda: samples)
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert f"warning: {message}: incentive.settings.expiry: the codes never expire" in result.stderr


def test_the_loaded_message_keeps_its_warnings(herald, samples):
    message = samples / "summer-sale.message.yaml"
    message.write_text(message.read_text().replace(", expiry: {days: 14}", ""))
    msg = herald.load_message(message)
    assert [(w.path, w.code, w.severity) for w in msg.warnings] == [
        ("creatives[2].content", "unsubscribe_unsigned", "warning"), ("incentive.settings.expiry", "no_expiry", "warning")]
    assert [w.code for w in herald.load_message(EXAMPLES / "summer-sale.message.yaml").warnings] == [
        "unsubscribe_unsigned"]
