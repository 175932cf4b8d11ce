"""Each built-in channel checks the settings it reads and refuses a bad one in plain words: the plugin, the
setting, what it must be and the value given; never Python's own text or a traceback."""

from __future__ import annotations

import pytest

from engine.errors import PluginSettingsError
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from plugins import DEFAULT_PLUGINS


def refusal(plugin: str, block: dict) -> str:
    with pytest.raises(PluginSettingsError) as info:
        Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), {f"plugins.channels.{plugin}": block})
    return str(info.value)


@pytest.mark.parametrize(("plugin", "block", "said"), [
    ("sms", {"cost": "abc"}, "cost: must be a number ≥ 0, not 'abc'"),
    ("sms", {"cost": -1}, "cost: must be a number ≥ 0, not -1"),
    ("sms", {"max_segments": 2.5}, "max_segments: must be a whole number ≥ 1, not 2.5"),
    ("sms", {"max_segments": 0}, "max_segments: must be a whole number ≥ 1, not 0"),
    ("sms", {"short_link_length": "x"}, "short_link_length: must be a whole number ≥ 1, not 'x'"),
    ("sms", {"default_region": "India"}, "default_region: must be a two-letter region code such as IN or US, not 'India'"),
    ("sms", {"optout_text": ""}, "optout_text: must be a non-empty text, not ''"),
    ("sms", {"dlt": [1]}, "dlt: must be a mapping of entity_id and templates, not [1]"),
    ("sms", {"dlt": {"templates": {"a": 1}}}, "dlt.templates: must be a list of {id, category, body} mappings"),
    ("sms", {"dlt": {"templates": [{"id": "1", "body": "x"}]}}, "dlt.templates[0].category: must be one of"),
    ("email", {"cost": True}, "cost: must be a number ≥ 0, not True"),
    ("email", {"html_warn_bytes": "100k"}, "html_warn_bytes: must be a whole number ≥ 1, not '100k'"),
    ("email", {"unsubscribe_base": "http://x.example/u"}, "unsubscribe_base: must be an https URL"),
    ("email", {"unsubscribe_base": 5}, "unsubscribe_base: must be an https URL (RFC 8058), not 5"),
    ("email", {"unsubscribe_secret": "s3cr3t"}, "unsubscribe_secret: must be a text of at least 16 characters, "
                                                "not 6 characters"),
    ("email", {"unsubscribe_mailto": ["a"]}, "unsubscribe_mailto: must be a non-empty text, not ['a']"),
    ("push", {"title_max": "65.5"}, "title_max: must be a whole number ≥ 1, not '65.5'"),
    ("push", {"body_max": -5}, "body_max: must be a whole number ≥ 1, not -5"),
    ("push", {"deep_link_schemes": "https"}, "deep_link_schemes: must be a list of texts, not 'https'"),
    ("line", {"cost": "cheap"}, "cost: must be a number ≥ 0, not 'cheap'"),
    ("viber", {"sender_name": 7}, "sender_name: must be a non-empty text, not 7"),
    ("viber", {"sender_avatar": {"url": 1}}, "sender_avatar: must be a non-empty text"),
    ("wechat", {"value_max": 0}, "value_max: must be a whole number ≥ 1, not 0"),
    ("wechat", {"templates": [1, 2]}, "templates: must be a mapping of template id → list of field names, not [1, 2]"),
    ("wechat", {"templates": {"t1": "first"}}, "templates.t1: must be a list of texts, not 'first'"),
    ("whatsapp", {"templates": ["promo"]}, "templates: must be a mapping of template name → its approved fields"),
    ("whatsapp", {"templates": {"promo": "approved"}}, "templates.promo: must be a mapping of language, category, "
                                                       "body and status, not 'approved'"),
    ("whatsapp", {"default_region": 91}, "default_region: must be a two-letter region code such as IN or US, not 91"),
    ("call_task", {"queues": "sales"}, "queues: must be a list of texts, not 'sales'"),
    ("call_task", {"cost": "1,5"}, "cost: must be a number ≥ 0, not '1,5'"),
    ("ads", {"google": 5}, "google: must be a mapping of cost and min_audience, not 5"),
    ("ads", {"google": {"min_audience": "many"}}, "google.min_audience: must be a whole number ≥ 1, not 'many'"),
    ("ads", {"facebook": {"cost": "free"}}, "facebook.cost: must be a number ≥ 0, not 'free'"),
    ("ads", {"default_region": "xx"}, "default_region: must be a two-letter region code such as IN or US, not 'xx'"),
])
def test_a_bad_channel_setting_is_named_with_what_it_must_be(plugin, block, said):
    text = refusal(plugin, block)
    assert text.startswith(f"plugins.plugins.channels.{plugin}: {said}"), text
    assert "s3cr3t" not in text  # a secret is never shown
    assert "convert" not in text and "object has no attribute" not in text and "invalid literal" not in text


def test_good_settings_are_read_as_given():
    settings = {"plugins.channels.sms": {"cost": 1, "max_segments": 3, "default_region": "in"},
                "plugins.channels.push": {"deep_link_schemes": ["HTTPS", "myapp"], "title_max": 40},
                "plugins.channels.ads": {"google": {"min_audience": 500}},
                "plugins.channels.wechat": {"templates": {"t1": ["first", "remark"]}},
                "plugins.channels.whatsapp": {"templates": {"promo": {"language": "en_US"}}}}
    registry = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), settings)
    sms = registry.channel("sms")
    assert (sms.cost, sms.max_segments, sms.region) == (1.0, 3, "IN")
    assert registry.channel("push").schemes == ("https", "myapp") and registry.channel("push").title_max == 40
    assert registry.channel("google").min_audience == 500
    assert registry.channel("wechat").templates == {"t1": ("first", "remark")}
    assert registry.channel("whatsapp").templates == {"promo": {"language": "en_US"}}


def test_numerals_written_as_text_are_read_as_numbers():
    """``$env:`` settings are text: a plain numeral is its number; anything else is still refused."""
    from plugins.channels.setting_checks import number, whole

    assert number({"cost": "0.02"}, "cost", 0.01) == 0.02 and whole({"n": " 3 "}, "n", 1) == 3
    for bad in ("1e3", "0x10", "-1", "1_000", "٣", "nan", "inf", ""):
        with pytest.raises(ValueError):
            number({"cost": bad}, "cost", 0.01)
