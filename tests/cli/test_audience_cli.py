"""`herald evaluate` on audiences with repeated ids and malformed handles: refused with every line (exit 2),
merged with --merge-duplicates, and a malformed phone only costs the SMS channel, with the reason."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from service.cli import app
from tests.conftest import EXAMPLES

MESSAGE = str(EXAMPLES / "summer-sale.message.yaml")
AT = "2026-07-04T13:30:00+00:00"
ROWS = ("id,tier,timezone,last_purchase_date,phone,email,subscription.sms\n"
        "c1,gold,Asia/Kolkata,2026-05-01,+1555,asha@example.com,subscribed\n"
        "c2,gold,Asia/Kolkata,2026-05-01,+919881924865,,subscribed\n"
        "c1,,,,,asha2@example.com,\n")


def run(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_repeated_ids_are_refused_with_their_lines(tmp_path):
    audience = tmp_path / "audience.csv"
    audience.write_text(ROWS)
    result = run("evaluate", "-m", MESSAGE, "-a", str(audience), "--at", AT, "--format", "json")
    assert result.exit_code == 2
    assert "audience.csv:4: id 'c1' also on line 2" in " ".join(result.output.split())


def test_merge_duplicates_merges_and_a_bad_phone_only_costs_sms(tmp_path):
    audience = tmp_path / "audience.csv"
    audience.write_text(ROWS)
    result = run("evaluate", "-m", MESSAGE, "-a", str(audience), "--at", AT, "--format", "json", "--explain",
                 "--merge-duplicates")
    assert result.exit_code == 0, result.output
    decisions = {d["customer"]: d for d in json.loads(result.stdout)["decisions"]}
    assert list(decisions) == ["c1", "c2"]
    c1 = decisions["c1"]
    assert c1["channel"] == "email"
    dropped = [t for t in c1["trace"] if t["event"] == "channel_dropped" and t["channel"] == "sms"]
    assert dropped == [{"step": "channel_priority", "event": "channel_dropped", "channel": "sms", "why": "invalid",
                        "reason": "phone '+1555' is not a valid number"}]
