"""The CLI refuses sends in the past (exit 2, the dates, no traceback) and shows a recurring message's next runs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from service.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()
MESSAGE = str(EXAMPLES / "summer-sale.message.yaml")
AUDIENCE = str(EXAMPLES / "audience.csv")


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_a_send_in_the_past_exits_2_with_the_dates():
    result = run("evaluate", "-m", MESSAGE, "-a", AUDIENCE, "--at", "2026-08-01T10:00:00+00:00")
    assert result.exit_code == 2
    assert "schedule.at 2026-07-04T13:30:00+00:00 is before now (2026-08-01T10:00:00+00:00)" in result.stderr
    assert "summer-sale.message.yaml:" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_the_demo_still_runs_with_its_own_instant():
    assert run("sample").exit_code == 0


def weekly(tmp_path):
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    (tmp_path / "fields.yaml").write_text((EXAMPLES.parent / "fields.yaml").read_text())
    text = (EXAMPLES / "summer-sale.message.yaml").read_text()
    start = text.index("schedule:")
    end = text.index("delivery:")
    text = text[:start] + "schedule:\n  kind: recurring\n  at: 2026-07-06T13:30:00+00:00\n  rrule: FREQ=WEEKLY;BYDAY=MO\n" + text[end:]
    path = tmp_path / "weekly.message.yaml"
    path.write_text(text)
    return str(path)


def test_a_recurring_message_shows_its_next_runs_and_evaluates_the_first(tmp_path):
    path = weekly(tmp_path)
    result = run("evaluate", "-m", path, "-a", AUDIENCE, "--at", "2026-07-08T00:00:00+00:00", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    runs = ["2026-07-13", "2026-07-20", "2026-07-27", "2026-08-03", "2026-08-10"]
    assert data["summary"]["next_runs"] == [f"{d}T13:30:00+00:00" for d in runs]
    assert {d["send_at"] for d in data["decisions"] if d["included"]} == {"2026-07-13T13:30:00+00:00"}
    table = run("evaluate", "-m", path, "-a", AUDIENCE, "--at", "2026-07-08T00:00:00+00:00", "--summary")
    assert table.exit_code == 0 and "next runs: 2026-07-13T13:30:00+00:00, 2026-07-20T13:30:00+00:00" in table.stderr
    nd = run("evaluate", "-m", path, "-a", AUDIENCE, "--at", "2026-07-08T00:00:00+00:00", "--format", "ndjson")
    assert json.loads(nd.stdout.splitlines()[-1])["summary"]["next_runs"][0] == "2026-07-13T13:30:00+00:00"
