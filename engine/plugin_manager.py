"""Builds a fresh pluggy PluginManager per call: hookspecs, the given defaults, entry points, allow/block lists.

There is no module-level manager. ``HERALD_PLUGINS`` (comma-separated) is an allow-list of entry-point
plugin names (empty string: none); ``HERALD_DISABLE_PLUGINS`` blocks plugins by name, defaults included
(``plugins.channels.sms`` or an entry-point name). The manager remembers what the lists left out (so that a
message needing one of those plugins is told which, see :class:`LeftOut`) and the names in them that match no
installed plugin (:attr:`HeraldPluginManager.list_warnings`, likely typos).
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points as _entry_points
from types import ModuleType

import pluggy

from engine import hookspecs
from engine.errors import PluginConflict

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: the engine's own plugins, registered before any other (blockable by name like the defaults)
ENGINE_PLUGINS: tuple[str, ...] = ("engine.evaluators.builtin",)
DISABLE_VAR, ALLOW_VAR = "HERALD_DISABLE_PLUGINS", "HERALD_PLUGINS"


@dataclass(frozen=True)
class LeftOut:
    """A plugin that is installed but not loaded: its name as the user wrote it, the list that left it out
    (``HERALD_DISABLE_PLUGINS``, ``HERALD_PLUGINS``, or ``blocked``/``only`` for a caller's own lists) and a
    function loading the plugin object (to learn what it would have registered)."""

    name: str
    by: str
    load: Callable[[], object]

    def why(self) -> str:
        """``which HERALD_DISABLE_PLUGINS disables`` / ``which HERALD_PLUGINS leaves out``."""
        return f"which {self.by} disables" if self.by in (DISABLE_VAR, "blocked") else f"which {self.by} leaves out"

    def fix(self) -> str:
        """What to change in the list to load the plugin again."""
        if self.by == ALLOW_VAR:
            return f"add {self.name} to {ALLOW_VAR}"
        if self.by == DISABLE_VAR:
            return f"remove {self.name} from {DISABLE_VAR}"
        return f"load plugin {self.name}"


class HeraldPluginManager(pluggy.PluginManager):
    """A pluggy manager that also records the plugins the lists left out and the list names that are no
    installed plugin's."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        #: plugin name → why it is not loaded
        self.left_out: dict[str, LeftOut] = {}
        #: one warning per name in HERALD_PLUGINS / HERALD_DISABLE_PLUGINS that names no installed plugin
        self.list_warnings: tuple[str, ...] = ()


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
) -> HeraldPluginManager:
    """Return a new manager with Herald's hookspecs and the requested plugins registered.

    :param defaults: dotted module names (or module/plugin objects) registered after the engine's own
        plugins (``ENGINE_PLUGINS``), e.g. ``plugins.DEFAULT_PLUGINS``.
    :param entry_points: also load third-party plugins from the ``herald`` entry-point group.
    :param only: allow-list of entry-point names (overrides ``HERALD_PLUGINS``).
    :param blocked: names never registered (added to ``HERALD_DISABLE_PLUGINS``).
    :param env: environment to read the two variables from (defaults to ``os.environ``).
    """
    env = os.environ if env is None else env
    pm = HeraldPluginManager()
    pm.add_hookspecs(hookspecs)
    disabled = _names(env.get(DISABLE_VAR)) or set()
    blocked_by = {**{n: DISABLE_VAR for n in disabled}, **{n: "blocked" for n in blocked}}
    for name in blocked_by:
        pm.set_blocked(name)
    builtin: list[str] = []
    for plugin in (*ENGINE_PLUGINS, *(d for d in defaults if d not in ENGINE_PLUGINS)):
        if isinstance(plugin, str):
            builtin.append(plugin)
            if pm.is_blocked(plugin):
                pm.left_out[plugin] = LeftOut(plugin, blocked_by[plugin], lambda p=plugin: importlib.import_module(p))
                continue
            pm.register(importlib.import_module(plugin), name=plugin)
        else:
            builtin.append(pm.register(plugin, name=getattr(plugin, "__name__", None)) or "")
    allowed_env = _names(env.get(ALLOW_VAR)) if only is None else None
    eps: list | None = None
    if entry_points:
        eps = list(_entry_points(group=ENTRY_POINT_GROUP))
        allowed = set(only) if only is not None else allowed_env
        for ep in eps:
            if pm.is_blocked(ep.name):
                pm.left_out.setdefault(ep.name, LeftOut(ep.name, blocked_by.get(ep.name, "blocked"), ep.load))
                continue
            if allowed is not None and ep.name not in allowed:
                pm.left_out[ep.name] = LeftOut(ep.name, ALLOW_VAR if only is None else "only", ep.load)
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            pm.register(ep.load(), name=ep.name)
    if disabled - set(builtin) and eps is None:  # names to check against the installed entry points
        eps = list(_entry_points(group=ENTRY_POINT_GROUP))
    pm.list_warnings = list_warnings(disabled, allowed_env if entry_points else None, builtin,
                                     [ep.name for ep in eps or ()])
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginConflict(f"plugin implements a hook that does not exist: {exc}") from exc
    return pm


def list_warnings(disabled: Collection[str], allowed: Collection[str] | None, builtin: Collection[str],
                  installed: Collection[str]) -> tuple[str, ...]:
    """A warning for each name of the disable list that is no plugin's (built-in or entry point), and each
    name of the allow list that is no entry point's (a built-in there is always loaded: say how to leave it
    out)."""
    out = []
    for name in sorted(disabled):
        if name not in builtin and name not in installed:
            out.append(f"{DISABLE_VAR}: no installed plugin is named {name!r}{_hint(name, [*builtin, *installed])}; "
                       "it disables nothing")
    for name in sorted(allowed or ()):
        if name in builtin:
            out.append(f"{ALLOW_VAR}: {name!r} is built in and always loaded; {ALLOW_VAR} lists entry-point "
                       f"plugins (leave a built-in out with {DISABLE_VAR})")
        elif name not in installed:
            out.append(f"{ALLOW_VAR}: no installed plugin is named {name!r}{_hint(name, installed)}; "
                       f"installed entry-point plugins: {', '.join(sorted(installed)) or 'none'}")
    return tuple(out)


def _hint(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1) or [k for k in known if k.rsplit(".", 1)[-1] == name]
    return f" (did you mean {close[0]!r}?)" if close else ""
