"""Shared fixtures: a fresh plugin manager and registry per test (never a global one)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.fields import build_catalogue, load_org_fields
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
EXAMPLES = RULES / "examples"
AT = datetime(2026, 7, 4, 13, 30, tzinfo=UTC)


@pytest.fixture
def registry() -> Registry:
    """The built-in plugins only (no entry points), in a fresh manager."""
    return Registry.build(make_plugin_manager(DEFAULT_PLUGINS, entry_points=False))


@pytest.fixture
def kinds(registry):
    """The rule kinds the built-in plugins register (what the rule-file loader takes)."""
    return registry.kinds


@pytest.fixture
def catalogue(registry):
    """Built-in fields, the plugins' contact fields and fields, and the sample org fields of rules/fields.yaml."""
    return build_catalogue((r.obj for r in registry.fields.values()), load_org_fields(RULES / "fields.yaml"),
                           registry.contacts.values())


@pytest.fixture
def herald(registry, catalogue) -> Herald:
    """An engine over the built-in plugins and the sample field catalogue."""
    return Herald(registry, catalogue)
