"""Builds a fresh pluggy PluginManager per call: hookspecs, the given defaults, entry points, allow/block lists.

There is no module-level manager. ``HERALD_PLUGINS`` (comma-separated) is an allow-list of entry-point
plugin names (empty string: none); ``HERALD_DISABLE_PLUGINS`` blocks plugins by name, defaults included
(``plugins.channels.sms`` or an entry-point name).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points as _entry_points
from types import ModuleType

import pluggy

from engine import hookspecs
from engine.errors import PluginConflict

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: the engine's own plugins, registered before any other (blockable by name like the defaults)
ENGINE_PLUGINS: tuple[str, ...] = ("engine.evaluators.builtin",)


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def make_plugin_manager(
    defaults: Iterable[str | ModuleType | object] = (),
    *,
    entry_points: bool = True,
    only: Iterable[str] | None = None,
    blocked: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Return a new manager with Herald's hookspecs and the requested plugins registered.

    :param defaults: dotted module names (or module/plugin objects) registered after the engine's own
        plugins (``ENGINE_PLUGINS``), e.g. ``plugins.DEFAULT_PLUGINS``.
    :param entry_points: also load third-party plugins from the ``herald`` entry-point group.
    :param only: allow-list of entry-point names (overrides ``HERALD_PLUGINS``).
    :param blocked: names never registered (added to ``HERALD_DISABLE_PLUGINS``).
    :param env: environment to read the two variables from (defaults to ``os.environ``).
    """
    env = os.environ if env is None else env
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in set(blocked) | (_names(env.get("HERALD_DISABLE_PLUGINS")) or set()):
        pm.set_blocked(name)
    for plugin in (*ENGINE_PLUGINS, *(d for d in defaults if d not in ENGINE_PLUGINS)):
        if isinstance(plugin, str):
            if pm.is_blocked(plugin):
                continue
            pm.register(importlib.import_module(plugin), name=plugin)
        else:
            pm.register(plugin, name=getattr(plugin, "__name__", None))
    if entry_points:
        allowed = set(only) if only is not None else _names(env.get("HERALD_PLUGINS"))
        for ep in _entry_points(group=ENTRY_POINT_GROUP):
            if (allowed is not None and ep.name not in allowed) or pm.is_blocked(ep.name):
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            pm.register(ep.load(), name=ep.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginConflict(f"plugin implements a hook that does not exist: {exc}") from exc
    return pm
