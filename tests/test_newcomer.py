"""A new user's campaign, written from README.md and rules/README.md only, through every CLI command.

Each test is a place where Herald gave a wrong answer with exit 0, a traceback, a misleading message, or
behaved otherwise than the docs say.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import RULES

runner = CliRunner()
NOW = "2026-11-01T00:00:00+00:00"

MESSAGE = """\
message:
  id: winter-2026
  title: Winter deals
  type: broadcast
  campaign: {id: winter, name: Winter, starts: 2026-11-01, ends: 2026-12-31}
  strategy: [personalization]
rules:
  personalization: perso.yaml
channels: [sms, email]
creatives:
  - channel: sms
    variant: gold
    content:
      body: "Hi {{ customer.first_name | default: 'there' }}, {{ vars.discount }} off. {{ coupon.code }} {{ optout }}"
  - channel: sms
    variant: default
    content:
      body: "Deals: {{ vars.discount }} off. {{ coupon.code }} {{ optout }}"
  - channel: email
    content:
      subject: "{{ vars.discount }} off"
      html: "<p>Use {{ coupon.code }}</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>"
incentive:
  kind: coupon
  settings: {source: generated, length: 8, expiry: {days: 14}, cap: 2}
schedule:
  kind: at
  at: 2026-11-10T10:00:00+00:00
  local_time: "10:00"
  quiet_hours: ["21:00", "09:00"]
delivery:
  senders: {sms: {sender_id: HERALD}, email: {from: offers@herald.example}}
"""

RULESET = """\
ruleset: winter-perso
kind: personalization
hit_policy: first
rules:
  - id: gold
    priority: 10
    when: {field: customer.tier, eq: gold}
    then: {variant: gold, vars: {discount: "30%"}}
  - id: default
    priority: 1000
    when: {always: true}
    then: {variant: default, vars: {discount: "10%"}}
tests:
  - name: gold
    given: {customer: {tier: gold}}
    expect: {fired: [gold], variant: gold}
"""

AUDIENCE = """\
id,first_name,tier,timezone,phone,email,subscription.sms
c1,Ann,gold,Asia/Kolkata,+919881924865,a@example.com,subscribed
c2,Bob,silver,Europe/London,+447700900123,b@example.com,
c3,Cy,gold,,+919818427393,c@example.com,
c4,Di,gold,America/New_York,+12025550123,d@example.com,
c5,Ed,,,,e@example.com,
"""


def run(*args: str, env: dict[str, str] | None = None):
    from service.cli import app

    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def camp(tmp_path: Path, monkeypatch) -> Path:
    """A campaign folder: message, rules, audience and the sample fields.yaml."""
    monkeypatch.delenv("HERALD_SETTINGS", raising=False)
    monkeypatch.delenv("HERALD_FIELDS", raising=False)
    shutil.copy(RULES / "fields.yaml", tmp_path / "fields.yaml")
    (tmp_path / "msg.yaml").write_text(MESSAGE)
    (tmp_path / "perso.yaml").write_text(RULESET)
    (tmp_path / "aud.csv").write_text(AUDIENCE)
    return tmp_path


def edit(camp: Path, old: str, new: str, name: str = "msg.yaml") -> Path:
    """A copy of the message with ``old`` replaced by ``new``."""
    text = (camp / "msg.yaml").read_text()
    assert old in text
    (camp / name).write_text(text.replace(old, new))
    return camp / name


def no_traceback(result) -> None:
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


# --- a. explain honours the incentive cap ------------------------------------------------------------------


def test_explain_gives_the_same_verdict_as_evaluate_for_a_recipient_beyond_the_coupon_cap(camp):
    msg, aud = str(camp / "msg.yaml"), str(camp / "aud.csv")
    evaluated = run("evaluate", "-m", msg, "-a", aud, "--at", NOW, "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output
    verdicts = {d["customer"]: d for d in json.loads(evaluated.stdout)["decisions"]}
    assert verdicts["c4"]["excluded_reason"] == "incentive_unavailable"  # cap 2: c1 and c2 took the codes
    for cid in ("c1", "c4"):
        explained = run("explain", "-m", msg, "-a", aud, "--at", NOW, "-c", cid, "--format", "json")
        assert explained.exit_code == 0, explained.output
        decision = json.loads(explained.stdout)["decision"]
        assert decision["included"] == verdicts[cid]["included"]
        assert decision["excluded_reason"] == verdicts[cid]["excluded_reason"]
    table = run("explain", "-m", msg, "-a", aud, "--at", NOW, "-c", "c4")
    assert "decision: excluded (incentive_unavailable)" in table.stdout


# --- b, c, d. plugin settings ------------------------------------------------------------------------------


def settings(camp: Path, text: str) -> dict[str, str]:
    (camp / "settings.yaml").write_text(text)
    return {"HERALD_SETTINGS": str(camp / "settings.yaml")}


@pytest.mark.parametrize(("block", "named"), [
    ("plugins.channels.sms: {cost: abc}", "cost"),
    ("plugins.optimizers.frequency_cap: {limits: 3}", "limits"),
    ("plugins.optimizers.frequency_cap: {timezone: Mars/Base}", "timezone"),
])
def test_a_bad_plugin_setting_exits_2_naming_the_plugin_without_a_traceback(camp, block, named):
    env = settings(camp, f"plugins:\n  {block}\n")
    result = run("evaluate", "-m", str(camp / "msg.yaml"), "-a", str(camp / "aud.csv"), "--at", NOW, env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    plugin = block.split(":")[0]
    assert result.stderr.startswith(f"{camp / 'settings.yaml'}: plugins.{plugin}"), result.stderr
    assert named in result.stderr


@pytest.mark.parametrize(("block", "named"), [
    ("plugins.optimizers.control_group: {percent: abc}", "percent"),
    ("plugins.optimizers.control_group: {percent: 150}", "percent"),
    ("plugins.optimizers.control_group: {percent: true}", "percent"),
    ("plugins.optimizers.control_group: {percent: 10, level: orgg}", "level"),
    ("plugins.optimizers.quiet_hours: {start: '25:00', end: '09:00'}", "start"),
    ("plugins.optimizers.quiet_hours: {start: 21, end: '09:00'}", "start"),
    ("plugins.optimizers.quiet_hours: {start: '21:00'}", "end"),
    ("plugins.optimizers.quiet_hours: {default_timezone: Mars/Base}", "default_timezone"),
])
def test_control_group_and_quiet_hours_settings_are_validated(camp, block, named):
    env = settings(camp, f"plugins:\n  {block}\n")
    result = run("message", "check", str(camp / "msg.yaml"), env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert named in result.stderr, result.stderr


def test_a_message_control_group_level_typo_is_refused(camp):
    text = (camp / "msg.yaml").read_text() + "optimizers: {control_group: {percent: 5, level: orgg}}\n"
    (camp / "msg.yaml").write_text(text)
    result = run("message", "check", str(camp / "msg.yaml"))
    assert result.exit_code == 2 and "optimizers.control_group.level" in result.stderr, result.output


def test_unknown_plugin_settings_keys_and_plugins_are_warnings(camp):
    env = settings(camp, "plugins:\n  plugins.optimizers.control_group: {precent: 10}\n  plugins.channel.sms: {cost: 1}\n")
    result = run("message", "check", str(camp / "msg.yaml"), env=env)
    assert result.exit_code == 0, result.output
    file = camp / "settings.yaml"
    assert (f"warning: {file}: plugins.plugins.optimizers.control_group: unknown setting 'precent' "
            "(did you mean 'percent'?)") in result.stderr, result.stderr
    assert f"warning: {file}: plugins.plugins.channel.sms: no plugin of that name is loaded (did you mean " \
           "'plugins.channels.sms'?)" in result.stderr


# --- e, f. campaign dates ----------------------------------------------------------------------------------


def test_a_campaign_ending_before_it_starts_is_a_load_error_with_the_dates(camp):
    bad = edit(camp, "starts: 2026-11-01, ends: 2026-12-31", "starts: 2026-12-31, ends: 2026-11-01")
    result = run("message", "check", str(bad))
    assert result.exit_code == 2
    assert "message.campaign.ends: the campaign ends (2026-11-01) before it starts (2026-12-31)" in result.stderr


def test_an_immediate_send_before_the_campaign_starts_is_refused_with_the_dates(camp):
    immediate = edit(camp, "  kind: at\n  at: 2026-11-10T10:00:00+00:00\n", "  kind: immediate\n")
    result = run("evaluate", "-m", str(immediate), "-a", str(camp / "aud.csv"), "--at", "2026-10-01T00:00:00+00:00")
    assert result.exit_code == 2, result.output
    assert "before the campaign starts" in result.stderr and "2026-11-01" in result.stderr
    assert "2026-10-01" in result.stderr
    inside = run("evaluate", "-m", str(immediate), "-a", str(camp / "aud.csv"), "--at", NOW, "--summary")
    assert inside.exit_code == 0, inside.output


# --- g. --render in a table --------------------------------------------------------------------------------


def test_render_with_table_output_shows_the_rendered_payloads(camp):
    result = run("evaluate", "-m", str(camp / "msg.yaml"), "-a", str(camp / "aud.csv"), "--at", NOW, "--render")
    assert result.exit_code == 0, result.output
    assert "c1 rendered (sms):" in result.stdout and "Hi Ann, 30% off." in result.stdout
    assert "c2 rendered (email):" in result.stdout and "Use " in result.stdout


# --- h. message check across files ------------------------------------------------------------------------


def test_message_check_of_two_messages_sharing_a_series_with_different_caps_names_both(camp):
    other = edit(camp, "id: winter-2026\n", "id: winter-b\n", "other.yaml")
    other.write_text(other.read_text().replace("cap: 2}", "cap: 5, series: winter-2026}"))
    result = run("message", "check", str(camp / "msg.yaml"), str(other))
    assert result.exit_code == 2, result.output
    assert result.stdout.startswith(f"ok {camp / 'msg.yaml'}")
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning")]
    assert lines and all(line.startswith(str(other)) for line in lines), result.stderr
    assert "winter-2026" in result.stderr and "winter-b" in result.stderr


def test_message_check_of_a_message_whose_rule_file_is_elsewhere_names_the_rule_file(camp):
    (camp / "rules").mkdir()
    (camp / "rules" / "perso.yaml").write_text(RULESET.replace("customer.tier", "customer.tierr"))
    moved = edit(camp, "personalization: perso.yaml", "personalization: rules/perso.yaml")
    result = run("message", "check", str(moved))
    assert result.exit_code == 2
    assert f"{camp / 'rules' / 'perso.yaml'}:7:" in result.stderr and "customer.tierr" in result.stderr


# --- i. plain messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "said"), [
    ('local_time: "10:00"', 'local_time: "25:00"', "schedule.local_time: a local time is HH:MM from 00:00 to 23:59, not '25:00'"),
    ('local_time: "10:00"', "local_time: 10:00", "schedule.local_time: a local time is HH:MM from 00:00 to 23:59 "
                                                 "(quote it: \"10:00\"), not 600"),
    ("id: winter-2026", 'id: "Winter 2026!"', "message.id: an id is letters, digits, '_', '.' and '-' "
                                              "(starting with a letter or digit), not 'Winter 2026!'"),
    ("at: 2026-11-10T10:00:00+00:00", 'at: "next tuesday"', "schedule.at: a date-time is ISO 8601 with an offset "
                                                             "(2026-07-01T10:00:00+05:30), not 'next tuesday'"),
])
def test_mistyped_times_and_ids_get_plain_messages(camp, old, new, said):
    result = run("message", "check", str(edit(camp, old, new)))
    assert result.exit_code == 2
    assert said in result.stderr, result.stderr
    assert "should match pattern" not in result.stderr and "Input should be" not in result.stderr


# --- j. JSONL ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("evaluator", ["compiled", "columnar"])
def test_a_jsonl_id_that_is_not_text_or_a_whole_number_is_a_bad_row_with_its_line(camp, evaluator):
    (camp / "aud.jsonl").write_text("\n".join([
        '{"id": "c1", "tier": "gold"}', '{"id": {"x": 1}, "tier": "gold"}', '{"id": ["c3"], "tier": "gold"}',
        '{"id": 42, "tier": "gold"}', '{"id": true, "tier": "gold"}', '{"id": 1.5, "tier": "gold"}']) + "\n")
    result = run("evaluate", "-m", str(camp / "msg.yaml"), "-a", str(camp / "aud.jsonl"), "--at", NOW,
                 "--evaluator", evaluator)
    assert result.exit_code == 2, result.output
    for line, kind in ((2, "an object"), (3, "a list"), (5, "true/false"), (6, "a fraction")):
        assert f"aud.jsonl:{line}: id: an id is text or a whole number, not {kind}" in result.stderr, result.stderr
    assert "aud.jsonl:4:" not in result.stderr
    kept = run("evaluate", "-m", str(camp / "msg.yaml"), "-a", str(camp / "aud.jsonl"), "--at", NOW,
               "--evaluator", evaluator, "--keep-valid", "--format", "json")
    assert [d["customer"] for d in json.loads(kept.stdout)["decisions"]] == ["c1", "42"]


# --- k. --output into a missing folder ---------------------------------------------------------------------


def test_output_into_a_folder_that_does_not_exist_is_a_clear_error(camp):
    target = camp / "nodir" / "out.json"
    result = run("evaluate", "-m", str(camp / "msg.yaml"), "-a", str(camp / "aud.csv"), "--at", NOW,
                 "--format", "json", "--output", str(target))
    assert result.exit_code == 2
    assert f"{target}: the folder {camp / 'nodir'} does not exist; create it or give --output another path" \
           in result.stderr, result.stderr
    assert ".part" not in result.stderr and not (camp / "nodir").exists()


# --- l. rules test: unknown facts in an example's given ----------------------------------------------------


def test_rules_test_refuses_an_unknown_fact_in_given_with_its_place(camp):
    (camp / "perso.yaml").write_text(RULESET.replace("given: {customer: {tier: gold}}",
                                                     "given: {customer: {tierr: gold}}"))
    result = run("rules", "test", str(camp / "perso.yaml"))
    assert result.exit_code == 2, result.output
    assert f"{camp / 'perso.yaml'}:15:24: " in result.stderr, result.stderr
    assert "tests[0].given.customer.tierr: unknown field 'customer.tierr' (did you mean 'customer.tier'?)" \
        in result.stderr


def test_rules_test_refuses_a_given_value_of_the_wrong_type(camp):
    (camp / "perso.yaml").write_text(RULESET.replace("given: {customer: {tier: gold}}",
                                                     "given: {customer: {tier: gold, points: lots}}"))
    result = run("rules", "check", str(camp / "perso.yaml"))
    assert result.exit_code == 2
    assert "tests[0].given.customer.points: expected a number" in result.stderr, result.stderr


def test_a_parquet_id_column_of_fractions_is_refused_not_turned_into_text(camp):
    import polars as pl

    pl.DataFrame({"id": [1.5, 2.0], "tier": ["gold", "gold"]}).write_parquet(camp / "aud.parquet")
    result = run("evaluate", "-m", str(camp / "msg.yaml"), "-a", str(camp / "aud.parquet"), "--at", NOW)
    assert result.exit_code == 2, result.output
    assert "aud.parquet:1: id: an id is text or a whole number, not Float64" in result.stderr, result.stderr


@pytest.mark.parametrize(("block", "said"), [
    ("plugins.optimizers.cost: {value: abc}", "plugins.plugins.optimizers.cost: value: value is a number ≥ 0, not 'abc'"),
    ("plugins.optimizers.cost: {channels: [sms]}", "channels: channels maps a channel to {cost, conversion_rate}"),
])
def test_cost_settings_are_validated_when_loaded_not_when_a_message_uses_them(camp, block, said):
    env = settings(camp, f"plugins:\n  {block}\n")
    result = run("message", "check", str(camp / "msg.yaml"), env=env)
    assert result.exit_code == 2 and said in result.stderr, result.output


def test_a_cost_settings_typo_is_a_warning(camp):
    env = settings(camp, "plugins:\n  plugins.optimizers.cost: {valeu: 2}\n")
    result = run("message", "check", str(camp / "msg.yaml"), env=env)
    assert result.exit_code == 0
    assert "plugins.plugins.optimizers.cost: unknown setting 'valeu' (did you mean 'value'?)" in result.stderr


def test_a_mistyped_rule_id_or_ruleset_name_gets_a_plain_message(camp):
    (camp / "perso.yaml").write_text(RULESET.replace("ruleset: winter-perso", "ruleset: Winter Perso")
                                     .replace("- id: gold\n", '- id: "gold rule"\n'))
    result = run("rules", "check", str(camp / "perso.yaml"))
    assert result.exit_code == 2
    assert ("ruleset: a ruleset name is lower-case letters, digits, '_' and '-' (starting with a letter or digit), "
            "not 'Winter Perso'") in result.stderr, result.stderr
    assert "id: an id is letters, digits, '_', '.' and '-' (starting with a letter or digit), not 'gold rule'" \
        in result.stderr
    assert "should match pattern" not in result.stderr


@pytest.mark.parametrize(("old", "new", "said"), [
    ('quiet_hours: ["21:00", "09:00"]', 'quiet_hours: [21:00, "09:00"]',
     'schedule.quiet_hours[0]: a local time is HH:MM from 00:00 to 23:59 (quote it: "21:00"), not 1260'),
    ("starts: 2026-11-01", 'starts: "1 Nov 2026"', "message.campaign.starts: a date is YYYY-MM-DD, not '1 Nov 2026'"),
])
def test_mistyped_quiet_hours_and_campaign_dates_get_plain_messages(camp, old, new, said):
    result = run("message", "check", str(edit(camp, old, new)))
    assert result.exit_code == 2
    assert said in result.stderr, result.stderr


def test_a_rule_file_given_as_a_message_and_a_message_given_as_rules_say_so(camp):
    as_message = run("evaluate", "-m", str(camp / "perso.yaml"), "-a", str(camp / "aud.csv"), "--at", NOW)
    assert as_message.exit_code == 2
    assert "this is a rule file (it has 'ruleset:'), not a message file" in as_message.stderr
    assert "Input should be" not in as_message.stderr
    as_rules = run("rules", "check", str(camp / "msg.yaml"))
    assert as_rules.exit_code == 2
    assert "this is a message file (it has 'message:'), not a rule file" in as_rules.stderr
