"""The ``herald`` command line, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import EXAMPLES, ROOT

runner = CliRunner()
MESSAGE = str(EXAMPLES / "summer-sale.message.yaml")
AUDIENCE = str(EXAMPLES / "audience.csv")
AT = "2026-07-04T13:30:00+00:00"


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_evaluate_json_gives_decisions_and_a_summary():
    result = run("evaluate", "--message", MESSAGE, "--audience", AUDIENCE, "--at", AT, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["decisions"]) == 200
    assert data["summary"]["total"] == 200
    assert sum(data["summary"]["channels"].values()) == data["summary"]["included"]


def test_evaluate_ndjson_streams_one_decision_per_line(tmp_path):
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", "ndjson", "--explain")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    decisions = [d for d in lines if "customer" in d]
    assert len(decisions) == 200 and decisions[0]["trace"]
    assert any("summary" in d for d in lines)


@pytest.mark.parametrize("evaluator", ["compiled", "reference", "durable"])
def test_every_evaluator_gives_the_same_decisions(evaluator):
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", "json", "--evaluator", evaluator)
    baseline = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT, "--format", "json")
    assert json.loads(result.stdout)["decisions"] == json.loads(baseline.stdout)["decisions"]


def test_evaluate_table_prints_the_summary():
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", AT)
    assert result.exit_code == 0
    assert "200 recipients" in result.stdout and "by channel" in result.stdout


def test_a_bad_csv_row_names_the_file_and_line_and_exits_2(tmp_path):
    bad = tmp_path / "aud.csv"
    bad.write_text("id,points\nc1,3\nc2,three\n")
    result = run("evaluate", "-m", MESSAGE, "-a", str(bad), "--at", AT)
    assert result.exit_code == 2
    assert f"{bad}:3: points: expected a number, got 'three'" in result.stderr


def test_a_naive_time_is_refused():
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", "2026-07-04T13:30:00")
    assert result.exit_code == 2 and "time zone offset" in result.output


def test_rules_check_accepts_good_files_and_rejects_bad_ones_with_places(tmp_path):
    ok = run("rules", "check", str(EXAMPLES))
    assert ok.exit_code == 0 and "ok" in ok.stdout and "summer-sale-personalization@" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "personalization.yaml").read_text().replace("time.local_hour", "time.local_hr"))
    shutil.copy(ROOT / "rules" / "fields.yaml", tmp_path / "fields.yaml")
    result = run("rules", "check", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:12:12: gold-electronics-evening:when.all[2]: unknown field 'time.local_hr'" in result.stderr


def test_rules_test_runs_the_examples_and_fails_on_a_wrong_expectation(tmp_path):
    ok = run("rules", "test", str(EXAMPLES), "--evaluator", "durable")
    assert ok.exit_code == 0 and "9 examples passed, 0 failed" in ok.stdout
    wrong = tmp_path / "p.yaml"
    wrong.write_text((EXAMPLES / "personalization.yaml").read_text().replace("variant: gold_evening}\n  - name", "variant: gold}\n  - name"))
    shutil.copy(ROOT / "rules" / "fields.yaml", tmp_path / "fields.yaml")
    result = run("rules", "test", str(wrong))
    assert result.exit_code == 1
    assert "expected variant 'gold', got 'gold_evening'" in result.stderr


def test_plugins_lists_everything_with_its_owner():
    result = run("plugins")
    assert result.exit_code == 0
    assert "plugins.channels.sms" in result.stdout and "personalization" in result.stdout


def test_demo_prints_a_summary_and_three_explained_decisions():
    result = run("sample")
    assert result.exit_code == 0, result.output
    assert "200 recipients" in result.stdout
    assert result.stdout.count("channel_priority  candidates") >= 2 and "excluded:" in result.stdout


def test_user_errors_never_show_a_traceback(tmp_path):
    broken = tmp_path / "m.yaml"
    broken.write_text("message: [unclosed\n")
    exe = Path(sys.executable).parent / "herald"
    proc = subprocess.run([str(exe), "evaluate", "-m", str(broken), "-a", AUDIENCE], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and f"{broken}:2:1:" in proc.stderr
