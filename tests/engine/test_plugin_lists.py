"""HERALD_PLUGINS / HERALD_DISABLE_PLUGINS: a name no installed plugin has is a warning (with a "did you mean"),
and leaving out a plugin a message needs is an error naming the plugin, the variable and the message file."""

from __future__ import annotations

import shutil
import sys

import pytest

from engine.errors import MessageFileError
from engine.fields import build_catalogue, load_org_fields
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS
from tests.conftest import EXAMPLES, RULES
from tests.engine.test_plugins_and_hooks import channels_plugin

MESSAGE = EXAMPLES / "summer-sale.message.yaml"


def warnings_for(env: dict[str, str], entry_points: bool = False) -> tuple[str, ...]:
    return Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=entry_points, env=env)).plugin_warnings


def herald_with(env: dict[str, str]) -> Herald:
    registry = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=True, env=env))
    return Herald(registry, build_catalogue((r.obj for r in registry.fields.values()),
                                            load_org_fields(RULES / "fields.yaml"), registry.contacts.values()))


def refusal(herald: Herald, path) -> MessageFileError:
    with pytest.raises(MessageFileError) as info:
        herald.load_message(path)
    return info.value


@pytest.fixture
def owl(monkeypatch):
    """An installed entry-point plugin ``owl`` registering the channel ``owl``."""
    mod = channels_plugin("owl")
    monkeypatch.setitem(sys.modules, "herald_owl", mod)

    class EP:
        name, group = "owl", "herald"

        def load(self):
            return mod

    monkeypatch.setattr("engine.plugin_manager._entry_points", lambda group: [EP()] if group == "herald" else [])
    return mod


# --- names that match no installed plugin -----------------------------------------------------------------


def test_a_typo_in_the_disable_list_is_a_warning_with_a_did_you_mean():
    (warning,) = warnings_for({"HERALD_DISABLE_PLUGINS": "plugins.channels.smss"})
    assert warning.startswith("HERALD_DISABLE_PLUGINS: no installed plugin is named 'plugins.channels.smss' "
                              "(did you mean 'plugins.channels.sms'?)")


def test_a_short_name_in_the_disable_list_suggests_the_plugin_it_abbreviates():
    (warning,) = warnings_for({"HERALD_DISABLE_PLUGINS": "whatsapp"})
    assert "no installed plugin is named 'whatsapp' (did you mean 'plugins.channels.whatsapp'?)" in warning


def test_names_of_installed_plugins_give_no_warning(owl):
    assert warnings_for({"HERALD_DISABLE_PLUGINS": "plugins.channels.sms, owl, engine.evaluators.builtin"}) == ()
    assert warnings_for({"HERALD_PLUGINS": "owl"}, entry_points=True) == ()
    assert warnings_for({}, entry_points=True) == ()


def test_a_typo_in_the_allow_list_is_a_warning(owl):
    (warning,) = warnings_for({"HERALD_PLUGINS": "owll"}, entry_points=True)
    assert warning.startswith("HERALD_PLUGINS: no installed plugin is named 'owll' (did you mean 'owl'?)")


def test_a_built_in_in_the_allow_list_is_a_warning_saying_how_to_leave_it_out(owl):
    (warning,) = warnings_for({"HERALD_PLUGINS": "owl,plugins.channels.sms"}, entry_points=True)
    assert warning.startswith("HERALD_PLUGINS: 'plugins.channels.sms' is built in")
    assert "HERALD_DISABLE_PLUGINS" in warning


def test_the_disable_list_also_knows_entry_point_names_when_entry_points_are_not_loaded(owl):
    assert warnings_for({"HERALD_DISABLE_PLUGINS": "owl"}, entry_points=False) == ()


# --- a plugin a message needs -----------------------------------------------------------------------------


def test_disabling_the_channel_of_a_creative_names_the_plugin_and_the_message():
    exc = refusal(herald_with({"HERALD_DISABLE_PLUGINS": "plugins.channels.sms"}), MESSAGE)
    text = str(exc)
    assert str(exc).startswith(f"{MESSAGE}: needs a plugin that HERALD_PLUGINS or HERALD_DISABLE_PLUGINS leaves out")
    assert all(p.code == "plugin_left_out" and p.file == str(MESSAGE) for p in exc.problems)
    assert ("creatives[0].channel: channel 'sms' is registered by plugin 'plugins.channels.sms', which "
            "HERALD_DISABLE_PLUGINS disables") in text
    assert "unknown channel" not in text


def test_disabling_a_channel_named_only_by_channel_priority_rules_names_the_rule(tmp_path):
    for name in ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    text = MESSAGE.read_text(encoding="utf-8")
    start, end = text.index("  - channel: sms"), text.index("  - channel: email")
    (tmp_path / "m.yaml").write_text(text[:start] + text[end:], encoding="utf-8")  # the e-mail creative only
    exc = refusal(herald_with({"HERALD_DISABLE_PLUGINS": "plugins.channels.sms"}), tmp_path / "m.yaml")
    (problem, *_) = exc.problems
    assert problem.file == str(tmp_path / "m.yaml") and problem.path == "rules.channel_priority"
    assert "rule high-value-email-first of channel-priority.yaml names channel 'sms'" in problem.message
    assert "plugin 'plugins.channels.sms', which HERALD_DISABLE_PLUGINS disables" in problem.message


def test_disabling_the_optimizer_of_a_rule_kind_incentive_or_settings_the_message_uses(tmp_path):
    shutil.copytree(EXAMPLES, tmp_path / "ex")
    path = tmp_path / "ex" / "summer-sale.message.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "optimizers:\n  control_group: {percent: 5}\n",
                    encoding="utf-8")
    env = {"HERALD_DISABLE_PLUGINS": "plugins.optimizers.channel_priority,plugins.incentives.coupon,"
                                     "plugins.optimizers.control_group"}
    text = str(refusal(herald_with(env), path))
    assert ("rules.channel_priority: rule kind 'channel_priority' is registered by plugin "
            "'plugins.optimizers.channel_priority', which HERALD_DISABLE_PLUGINS disables") in text
    assert "message.strategy[1]: rule kind 'channel_priority' is registered by plugin" in text
    assert "incentive.kind: incentive type 'coupon' is registered by plugin 'plugins.incentives.coupon'" in text
    assert "optimizers.control_group: optimizer 'control_group' is registered by plugin " \
           "'plugins.optimizers.control_group'" in text


def test_an_entry_point_plugin_left_out_by_the_allow_list_is_named(tmp_path, owl):
    (tmp_path / "m.yaml").write_text(
        "message: {id: m, title: t, campaign: {id: c}}\ncreatives:\n  - {channel: owl, content: {note: hi}}\n")
    text = str(refusal(herald_with({"HERALD_PLUGINS": ""}), tmp_path / "m.yaml"))
    assert "channel 'owl' is registered by plugin 'owl', which HERALD_PLUGINS leaves out" in text
    assert "add owl to HERALD_PLUGINS" in text


def test_disabling_a_plugin_the_message_does_not_need_is_fine():
    msg = herald_with({"HERALD_DISABLE_PLUGINS": "plugins.channels.wechat,plugins.optimizers.control_group"}) \
        .load_message(MESSAGE)
    assert msg.id == "summer-sale-2026"
