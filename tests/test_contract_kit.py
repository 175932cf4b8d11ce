"""The contract test kit (engine.testing) run against every built-in channel and incentive, the kit's own
ability to fail a broken plugin, and the example third-party plugin discovered through its entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from engine import Creative
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.testing import (
    ChannelContract,
    IncentiveContract,
    contact_customers,
    registry_of,
    sample_creatives,
)
from plugins import DEFAULT_PLUGINS

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False))

#: Test-side samples for the seed channels until they offer ``sample_creatives()`` themselves.
FALLBACK_SAMPLES = {
    "sms": [{"body": "Hi {{ customer.first_name }}, summer sale: 20% off today only. {{ optout }}"}],
    "email": [{"subject": "{{ customer.first_name }}, 20% off this summer",
               "html": '<p>Hello {{ customer.first_name }},</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'}],
}


class TestBuiltinChannels(ChannelContract):
    """Every channel in the default registry (discovered at test time) meets the channel contract."""

    @pytest.fixture(params=sorted(REGISTRY.channels))
    def herald_channel(self, request):
        return REGISTRY.channel(request.param)

    @pytest.fixture
    def herald_samples(self, herald_channel):
        samples = sample_creatives(herald_channel, FALLBACK_SAMPLES.get(herald_channel.name, ()))
        if not samples:
            pytest.skip(f"channel {herald_channel.name!r} offers no sample_creatives() yet")
        return samples


class TestBuiltinIncentives(IncentiveContract):
    """Every incentive type in the default registry meets the incentive contract."""

    @pytest.fixture(params=sorted(REGISTRY.incentives))
    def herald_incentive(self, request):
        return REGISTRY.incentive(request.param)


def test_report_channels_without_samples():
    """Names the channels whose sample-based checks cannot run (a warning, so it shows in every run)."""
    missing = sorted(n for n, r in REGISTRY.channels.items()
                     if not sample_creatives(r.obj) and n not in FALLBACK_SAMPLES)
    if missing:
        warnings.warn(f"channels without sample_creatives(): {', '.join(missing)}", UserWarning, stacklevel=1)
    assert set(missing) <= set(REGISTRY.channels)


def test_every_builtin_incentive_offers_samples():
    for name, reg in REGISTRY.incentives.items():
        assert reg.obj.sample_specs(), f"incentive {name} has no sample_specs()"


def test_contact_states_cover_every_reachability_value():
    states = contact_customers("sms")
    assert states["no_contact"].attributes.get("phone") is None
    assert {c.attributes.get("subscription.sms") for c in states.values()} >= {
        "valid", "subscribed", "unable_to_verify", "soft_bounced", "unsubscribed", "hard_bounced", "invalid"}


def test_registry_of_wraps_loose_objects():
    coupon = REGISTRY.incentive("coupon")
    reg = registry_of(coupon)
    assert list(reg.incentives) == ["coupon"] and reg.incentives["coupon"].owner == "contract-kit:coupon"


def test_sample_creatives_accept_content_mappings():
    class Bare:
        name = "bare"
        creative_schema = {"examples": [{"text": "hi {{ optout }}"}]}

    assert sample_creatives(Bare()) == [Creative("bare", "default", {"text": "hi {{ optout }}"})]


BROKEN_PLUGIN = '''
from engine import Creative, Reachability, SendResult
from engine.testing import ChannelContract


class Broken:
    """Accepts anything, reaches everyone, renders a timestamp: three contract violations."""
    name = "broken"
    kind = "direct"
    cost = 0.0
    creative_schema = {}
    tags = {"optout": "STOP"}
    required_tags = ("optout",)

    def sample_creatives(self):
        return [Creative("broken", content={"text": "Hi {{ optout }}"})]

    def validate(self, creative, message):
        return []

    def reachability(self, customer, message):
        return Reachability.VALID

    def render(self, creative, context):
        import time
        return {"text": creative.content["text"], "at": time.perf_counter_ns()}

    async def send(self, payload, ctx):
        return SendResult.accepted("always")


class TestBroken(ChannelContract):
    channel = Broken()
'''


def run_pytest(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(path)],
                          capture_output=True, text=True, cwd=path if path.is_dir() else path.parent, timeout=120)


def test_the_kit_fails_a_channel_that_breaks_the_contract(tmp_path):
    (tmp_path / "test_broken.py").write_text(textwrap.dedent(BROKEN_PLUGIN), encoding="utf-8")
    result = run_pytest(tmp_path / "test_broken.py", "-p", "engine.testing")
    out = result.stdout
    assert result.returncode == 1, out
    assert "FAILED test_broken.py::TestBroken::test_reachability_of_the_standard_contact_states" in out
    assert "FAILED test_broken.py::TestBroken::test_render_is_deterministic_and_json_ready" in out
    assert "broken: no contact gave valid" in out
    # the required-tag and unknown-tag checks come from the engine's validation, so they still pass
    assert " passed" in out


@pytest.mark.slow
def test_the_example_plugin_passes_its_own_suite():
    result = run_pytest(ROOT / "examples" / "herald-tiktok")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "failed" not in result.stdout


# --- the example third-party plugin, through its entry point -------------------------------------------


def registry_with(env: dict[str, str]) -> Registry:
    return Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=True, env=env))


def test_the_example_plugin_is_discovered_through_its_entry_point():
    reg = registry_with({})
    assert reg.channels["tiktok"].owner == "tiktok"
    assert ("tiktok", "channel:direct", "tiktok") in reg.rows()


def test_herald_plugins_allow_list_admits_or_excludes_it():
    assert "tiktok" in registry_with({"HERALD_PLUGINS": "tiktok"}).channels
    assert "tiktok" not in registry_with({"HERALD_PLUGINS": ""}).channels
    assert "tiktok" not in registry_with({"HERALD_PLUGINS": "someone_else"}).channels
    assert "sms" in registry_with({"HERALD_PLUGINS": ""}).channels  # defaults are not entry points


def test_herald_disable_plugins_blocks_it():
    reg = registry_with({"HERALD_DISABLE_PLUGINS": "tiktok"})
    assert "tiktok" not in reg.channels and "sms" in reg.channels
