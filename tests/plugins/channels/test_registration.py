"""Every built-in channel registers through its hook with the members the engine relies on."""

from __future__ import annotations

from engine.contracts import Channel, ColumnarChannel
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from plugins import DEFAULT_PLUGINS

KINDS = {"sms": "direct", "email": "direct", "push": "direct", "line": "direct", "viber": "direct",
         "wechat": "direct", "whatsapp": "direct", "call_task": "task",
         "facebook": "ad", "instagram": "ad", "google": "ad", "youtube": "ad"}


def test_every_channel_is_registered_with_its_owner_and_kind(registry):
    assert {n: r.obj.kind for n, r in registry.channels.items()} == KINDS
    assert registry.channels["google"].owner == "plugins.channels.ads"
    assert registry.channels["whatsapp"].owner == "plugins.channels.whatsapp"


def test_every_channel_has_a_schema_tags_and_a_columnar_reachability(registry):
    for name, reg in registry.channels.items():
        channel = reg.obj
        assert isinstance(channel, Channel) and isinstance(channel, ColumnarChannel), name
        assert channel.creative_schema["type"] == "object" and channel.creative_schema["properties"], name
        assert set(channel.required_tags) <= set(channel.tags), name
        assert channel.cost >= 0, name


def test_costs_come_from_settings():
    settings = {"plugins.channels.sms": {"cost": 0.02}, "plugins.channels.ads": {"google": {"cost": 0.001}}}
    registry = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False), settings)
    assert registry.channel("sms").cost == 0.02 and registry.channel("google").cost == 0.001
    assert registry.channel("facebook").cost == 0.0 and registry.channel("email").cost == 0.001
