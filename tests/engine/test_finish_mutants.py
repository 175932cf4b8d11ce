"""The finish step (:mod:`engine.finish`) as a user sees it, pinned where mutation testing found it
unchecked: the trace lines of the default variant, ``no_reachable_channel``, the incentive (previewed,
reserved, unavailable), the zone the incentive's dates are counted in, a channel dropped for a template
error, and the incentive's audience check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine import Customer
from engine.errors import MessageFileError
from engine.pipeline import Pipeline
from tests.conftest import AT, EXAMPLES
from tests.engine.test_pipeline import GOLD


@pytest.fixture
def message(herald):
    return herald.load_message(EXAMPLES / "summer-sale.message.yaml")


def steps(decision, *events):
    return [(t.step, t.event, dict(t.detail)) for t in decision.trace if t.event in events]


def with_settings(message, **settings):
    return replace(message, incentive=replace(message.incentive, settings={
        "source": "generated", "length": 8, "expiry": {"days": 14}, **settings}))


def test_a_previewed_incentive_and_no_channel_are_traced(message, registry):
    nobody = {k: v for k, v in GOLD.items() if k not in ("phone", "email")}
    ok, gone = Pipeline(message, registry, at=AT, explain=True).run([Customer("c1", GOLD), Customer("c2", nobody)])
    assert steps(ok, "previewed", "reserved") == [("incentive", "previewed", {"kind": "coupon"})]
    assert (gone.included, gone.excluded_reason, gone.incentive) == (False, "no_reachable_channel", None)
    assert steps(gone, "excluded") == [("channels", "excluded", {"reason": "no_reachable_channel"})]


def test_a_recipient_the_incentive_cannot_serve_is_excluded_with_the_incentives_words(message, registry):
    capped = with_settings(message, cap=1)
    first, second = Pipeline(capped, registry, at=AT, explain=True, preview=False).run(
        [Customer("c1", GOLD), Customer("c2", GOLD)])
    assert first.included and first.incentive["status"] == "reserved"
    assert (second.included, second.excluded_reason, second.incentive) == (False, "incentive_unavailable", None)
    ((step, event, detail),) = steps(second, "excluded")
    assert (step, event, detail["reason"], detail["kind"]) == ("incentive", "excluded", "incentive_unavailable", "coupon")
    assert "cap" in detail["error"] and set(detail) == {"reason", "kind", "error"}


def test_the_incentives_dates_are_the_recipients_dates(message, registry):
    # 13:30 UTC on 4 July is already 5 July at UTC+14
    far = {**GOLD, "timezone": "Pacific/Kiritimati"}
    here, there = Pipeline(message, registry, at=AT).run([Customer("c1", GOLD), Customer("c2", far)])
    assert (here.incentive["expires_on"], there.incentive["expires_on"]) == ("2026-07-18", "2026-07-19")


def test_a_channel_whose_template_fails_is_dropped_with_the_error_and_the_next_one_renders(message, registry):
    broken = tuple(replace(c, content={"body": "{{ coupon.code "}) if c.channel == "sms" else c
                   for c in message.creatives)
    (d,) = Pipeline(replace(message, creatives=broken), registry, at=AT, explain=True, render=True).run(
        [Customer("c1", GOLD)])
    assert (d.channel, d.rendered["channel"]) == ("email", "email")
    ((step, event, detail),) = steps(d, "channel_dropped")
    assert (step, event, detail["channel"], detail["why"]) == ("render", "channel_dropped", "sms", "template_error")
    assert detail["error"] and set(detail) == {"channel", "why", "error"}


def test_an_incentive_too_small_for_the_audience_names_the_setting_and_the_file(message, registry):
    small = with_settings(message, alphabet="numeric", length=1)
    with pytest.raises(MessageFileError) as err:
        Pipeline(small, registry, at=AT).prepare(11)
    assert str(err.value).startswith(f"{message.source}: the incentive cannot serve this run")
    (problem,) = err.value.problems
    assert (problem.path, problem.code, problem.file) == ("incentive.settings.length", "code_space_too_small",
                                                          message.source)
    assert "10 distinct codes" in problem.message and "11 recipients" in problem.message
    Pipeline(small, registry, at=AT).prepare(10)
    Pipeline(small, registry, at=AT).prepare(None)


def test_a_recipient_no_channel_renders_for_is_excluded_and_keeps_the_incentive_reserved_for_it(message, registry):
    broken = tuple(replace(c, content={k: "{{ coupon.code " for k in c.content}) for c in message.creatives)
    (d,) = Pipeline(replace(message, creatives=broken), registry, at=AT, explain=True, render=True).run(
        [Customer("c1", GOLD)])
    assert (d.included, d.excluded_reason, d.rendered, d.channel) == (False, "render_failed", None, None)
    assert d.incentive is not None and d.incentive["preview"] is True
    assert [t[2]["channel"] for t in steps(d, "channel_dropped")] == ["sms", "email"]
    assert steps(d, "excluded") == [("render", "excluded", {"reason": "render_failed"})]
