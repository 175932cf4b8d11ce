"""Message files: shape errors with line and column, and the whole-message checks of the six steps."""

from __future__ import annotations

import pytest

from engine.errors import MessageFileError
from tests.conftest import EXAMPLES

BASE = (EXAMPLES / "summer-sale.message.yaml").read_text()


@pytest.fixture
def write(tmp_path):
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())

    def _write(text):
        path = tmp_path / "m.message.yaml"
        path.write_text(text)
        return path

    return _write


def problems(herald, path):
    with pytest.raises(MessageFileError) as info:
        herald.load_message(path)
    return [str(p) for p in info.value.problems]


def test_the_sample_message_loads(herald):
    msg = herald.load_message(EXAMPLES / "summer-sale.message.yaml")
    assert msg.id == "summer-sale-2026" and set(msg.rulesets) == {"eligibility", "personalization", "channel_priority"}
    assert msg.schedule.at.isoformat() == "2026-07-04T13:30:00+00:00"


def test_sms_without_the_optout_tag_is_rejected_at_its_line(herald, write):
    path = write(BASE.replace(". {{ optout }}\"\n  - channel: sms", ".\"\n  - channel: sms", 1))
    (msg,) = problems(herald, path)
    assert msg.startswith(f"{path}:16:7: creatives[0].content.body: the {{{{ optout }}}} tag is required")


def test_unknown_tags_and_channels_are_named(herald, write):
    path = write(BASE.replace("{{ vars.discount }} off electronics", "{{ cutsomer.tier }} off").replace(
        "  - channel: email", "  - channel: pigeon"))
    msgs = problems(herald, path)
    assert any("creatives[0].content.body: unknown tag {{ cutsomer.tier }}" in m for m in msgs)
    assert any("creatives[2].channel: unknown channel 'pigeon'" in m for m in msgs)


def test_incentive_tags_need_the_incentive(herald, write):
    text = BASE[: BASE.index("incentive:")] + BASE[BASE.index("schedule:"):]
    msgs = problems(herald, write(text))
    assert any("the {{ coupon.code }} tag needs a coupon incentive" in m for m in msgs)


def test_schedule_outside_the_campaign_is_an_error(herald, write):
    (msg,) = problems(herald, write(BASE.replace("at: 2026-07-04T13:30:00+00:00", "at: 2027-03-01T10:00:00+00:00")))
    assert "schedule.at" in msg and "outside the campaign window" in msg


def test_shape_errors_point_at_the_line(herald, write):
    (msg,) = problems(herald, write(BASE.replace("  type: broadcast", "  type: broadcats")))
    assert msg.endswith(":5:3: message.type: Input should be 'broadcast', 'bounceback' or 'timeline'")


def test_a_bad_rule_file_is_reported_with_its_own_file_and_line(herald, write, tmp_path):
    (tmp_path / "personalization.yaml").write_text(
        (EXAMPLES / "personalization.yaml").read_text().replace("customer.tier, in", "customer.tire, in", 1))
    (msg,) = problems(herald, write(BASE))
    assert msg.startswith(f"{tmp_path / 'personalization.yaml'}:10:12: gold-electronics-evening:when.all[0]: unknown field")


def test_a_variant_without_a_creative_is_an_error(herald, write):
    text = BASE.replace("variant: gold_evening", "variant: silver_evening")
    msgs = problems(herald, write(text.replace("  - channel: sms\n    variant: default", "  - channel: sms\n    variant: other")
                                  .replace("  - channel: email\n    variant: default", "  - channel: email\n    variant: other")))
    assert any("variant 'gold_evening' (rule gold-electronics-evening) has no creative" in m for m in msgs)


def test_optimizer_settings_are_checked_when_the_message_loads(herald, write):
    text = BASE.replace("delivery:\n", "optimizers:\n  control_group: {percent: 150}\n  frequency_cap: {limits: [{period: fortnight, max: 2}]}\n"
                        "  quiet_hours: {start: '25:00', end: '08:00'}\n  cost: {channels: {sms: {conversion_rate: 3}}}\n  magic: {}\n"
                        "delivery:\n")
    msgs = problems(herald, write(text))
    assert any("optimizers.control_group.percent: percent is a number from 0 to 100, not 150" in m for m in msgs)
    assert any("optimizers.frequency_cap.limits[0].period: one of day, week, month" in m for m in msgs)
    assert any("optimizers.quiet_hours.start: expected HH:MM, got '25:00'" in m for m in msgs)
    assert any("optimizers.cost.channels.sms.conversion_rate: a conversion rate is a number from 0 to 1" in m for m in msgs)
    assert any("optimizers.magic: unknown optimizer 'magic'" in m for m in msgs)
