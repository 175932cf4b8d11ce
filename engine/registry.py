"""Runs the registration hooks once into an immutable Registry; every item records its owning plugin."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import pluggy

from engine import hookspecs
from engine.contracts import (
    Channel,
    ContactField,
    Evaluator,
    EvaluatorSpec,
    FieldSpec,
    IncentiveType,
    Optimizer,
    RuleKind,
)
from engine.errors import PluginConflict, PluginSettingsError, UnknownReference
from engine.events import EngineEvent
from engine.model import Customer, Issue, Message
from engine.plugin_manager import LeftOut
from engine.stores import InMemoryLedgerStore, LedgerStore

log = logging.getLogger(__name__)
T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Registered(Generic[T]):
    """A registered object and the name of the plugin that registered it (``also``: the other plugins that
    registered the same object, for contact fields several channels share)."""

    obj: T
    owner: str
    also: tuple[str, ...] = ()

    @property
    def owners(self) -> tuple[str, ...]:
        """Every plugin that registered the object, in registration order."""
        return (self.owner, *self.also)


class Registry:
    """The channels, incentive types, optimizers, rule kinds, contact fields, fields and evaluators the plugins
    registered. Read-only.

    Build it with :meth:`Registry.build`; runtime hooks (``enrich_facts``, ``check_delivery``,
    ``engine_event``) are called through :attr:`hook`. ``ledger`` is the default store of incentive
    ledgers for evaluations with this registry (in memory unless the builder passes another).
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        channels: Mapping[str, Registered[Channel]],
        incentives: Mapping[str, Registered[IncentiveType]],
        optimizers: Mapping[str, Registered[Optimizer]],
        fields: Mapping[str, Registered[FieldSpec]],
        evaluators: Mapping[str, Registered[EvaluatorSpec]] | None = None,
        ledger: LedgerStore | None = None,
        rule_kinds: Mapping[str, Registered[RuleKind]] | None = None,
        contact_fields: Mapping[str, Registered[ContactField]] | None = None,
    ):
        self._pm = pm
        #: contact attribute name → the field and the plugins that registered it, sorted by name
        self.contact_fields = MappingProxyType(dict(sorted((contact_fields or {}).items())))
        #: contact attribute name → ContactField: what the field catalogue and the audience readers take
        self.contacts: Mapping[str, ContactField] = MappingProxyType({n: r.obj for n, r in self.contact_fields.items()})
        #: rule kind name → the kind, sorted by pipeline order (then name)
        self.rule_kinds = MappingProxyType(dict(sorted((rule_kinds or {}).items(),
                                                       key=lambda kv: (kv[1].obj.order, kv[0]))))
        #: rule kind name → RuleKind, in pipeline order: what the loader, the schema and rule tests take
        self.kinds: Mapping[str, RuleKind] = MappingProxyType({n: r.obj for n, r in self.rule_kinds.items()})
        self.evaluators = MappingProxyType(dict(evaluators or {}))
        self.ledger: LedgerStore = ledger if ledger is not None else InMemoryLedgerStore()
        self.channels = MappingProxyType(dict(channels))
        self.incentives = MappingProxyType(dict(incentives))
        self.optimizers = MappingProxyType(dict(optimizers))
        self.fields = MappingProxyType(dict(fields))
        self.pipeline: tuple[Optimizer, ...] = tuple(
            r.obj for r in sorted(self.optimizers.values(), key=lambda r: (r.obj.order, r.obj.name))
        )
        self.has_enrichers = bool(pm.hook.enrich_facts.get_hookimpls())
        self.has_delivery_checks = bool(pm.hook.check_delivery.get_hookimpls())
        self.has_observers = bool(pm.hook.engine_event.get_hookimpls())
        #: settings blocks naming no loaded plugin, and keys no plugin read (likely typos); see ``build``
        self.settings_warnings: tuple[str, ...] = ()
        #: names in HERALD_PLUGINS / HERALD_DISABLE_PLUGINS that are no installed plugin's (likely typos)
        self.plugin_warnings: tuple[str, ...] = tuple(getattr(pm, "list_warnings", ()))
        #: installed plugins the lists left out (``engine.plugin_manager.LeftOut``), by name
        self.left_out: Mapping[str, LeftOut] = MappingProxyType(dict(getattr(pm, "left_out", {})))
        self._left_out_gives: dict[str, dict[str, set[str]]] | None = None

    @property
    def hook(self) -> Any:
        """The plugin manager's hook relay, for the runtime hooks."""
        return self._pm.hook

    @classmethod
    def build(cls, pm: pluggy.PluginManager, settings: Mapping[str, Mapping[str, Any]] | None = None, *,
              ledger: LedgerStore | None = None) -> Registry:
        """Call every ``register_*`` hook implementation once, attributing each item to its plugin.

        :param settings: per-plugin settings blocks keyed by plugin name.
        :param ledger: the incentive ledger store (default: a new in-memory one).
        """
        settings = settings or {}
        found: dict[str, dict[str, Registered[Any]]] = {}
        views: dict[str, SettingsView] = {}
        shared: dict[str, list[tuple[str, ContactField]]] = {}  # contact field → (plugin, its registration)
        for hook_name, kind, key, proto in (
            ("register_channels", "channel", "name", Channel),
            ("register_incentives", "incentive type", "kind", IncentiveType),
            ("register_optimizers", "optimizer", "name", Optimizer),
            ("register_fields", "field", "path", FieldSpec),
            ("register_evaluators", "evaluator", "name", EvaluatorSpec),
            ("register_rule_kinds", "rule kind", "name", RuleKind),
            ("register_contact_fields", "contact field", "name", ContactField),
        ):
            items: dict[str, Registered[Any]] = {}
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                register = _registrar(items, impl.plugin_name, kind, key, proto, shared)
                view = views.setdefault(impl.plugin_name, SettingsView(settings.get(impl.plugin_name, {})))
                args = {"register": register, "settings": view}
                try:
                    impl.function(**{a: args[a] for a in impl.argnames})
                except (ValueError, TypeError, LookupError) as exc:
                    if not len(view):  # no settings to blame: a bug in the plugin
                        raise
                    raise PluginSettingsError(view.explain(impl.plugin_name, exc)) from exc
            found[hook_name] = items
        registry = cls(
            pm,
            channels=found["register_channels"],
            incentives=found["register_incentives"],
            optimizers=found["register_optimizers"],
            fields=found["register_fields"],
            evaluators=found["register_evaluators"],
            ledger=ledger,
            rule_kinds=found["register_rule_kinds"],
            contact_fields=found["register_contact_fields"],
        )
        registry.settings_warnings = settings_warnings(settings, views, [n for n, _ in pm.list_name_plugin()])
        return registry

    def channel(self, name: str) -> Channel:
        """The channel registered as ``name``; ``UnknownReference`` lists the known ones otherwise."""
        try:
            return self.channels[name].obj
        except KeyError:
            raise UnknownReference(f"unknown channel {name!r}; registered: {', '.join(sorted(self.channels))}") from None

    def incentive(self, kind: str) -> IncentiveType:
        """The incentive type registered as ``kind``."""
        try:
            return self.incentives[kind].obj
        except KeyError:
            known = ", ".join(sorted(self.incentives))
            raise UnknownReference(f"unknown incentive type {kind!r}; registered: {known}") from None

    def rule_kind(self, name: str) -> RuleKind:
        """The rule kind registered as ``name``; ``UnknownReference`` lists the registered ones otherwise."""
        try:
            return self.rule_kinds[name].obj
        except KeyError:
            raise UnknownReference(unknown_kind(name, self.rule_kinds)) from None

    def left_out_giving(self, what: str, name: str) -> LeftOut | None:
        """The left-out plugin (see :attr:`left_out`) that would have registered ``what`` (``channel``,
        ``incentive type``, ``optimizer``, ``rule kind`` or ``contact field``) ``name``; ``None`` when none would."""
        return next((self.left_out[p] for p, gives in self._gives().items() if name in gives.get(what, ())), None)

    def left_out_names(self, what: str) -> set[str]:
        """Every ``what`` name the left-out plugins would have registered."""
        return {n for gives in self._gives().values() for n in gives.get(what, ())}

    def _gives(self) -> dict[str, dict[str, set[str]]]:
        if self._left_out_gives is None:  # loaded once, and only when asked: a left-out plugin may be broken
            self._left_out_gives = {name: _registered_by(lo) for name, lo in self.left_out.items()}
        return self._left_out_gives

    def check_delivery(self, customer: Customer, channel: str, message: Message, draft: Any) -> list[Issue]:
        """The issues every ``check_delivery`` implementation reports for one candidate channel."""
        if not self.has_delivery_checks:
            return []
        found = self._pm.hook.check_delivery(customer=customer, channel=channel, message=message, draft=draft)
        return [issue for issues in found for issue in (issues or ())]

    def evaluator(self, name: str) -> Evaluator:
        """A new evaluator registered as ``name``; ``UnknownReference`` lists the registered ones otherwise."""
        try:
            spec = self.evaluators[name].obj
        except KeyError:
            known = ", ".join(sorted(self.evaluators)) or "none"
            raise UnknownReference(f"unknown evaluator {name!r}; registered: {known}") from None
        return spec.create()

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, kind, owning plugin) for everything registered, sorted: what ``herald plugins`` shows."""
        out = [(n, f"channel:{r.obj.kind}", r.owner) for n, r in self.channels.items()]
        out += [(n, "incentive", r.owner) for n, r in self.incentives.items()]
        out += [(n, f"optimizer:{r.obj.order}", r.owner) for n, r in self.optimizers.items()]
        out += [(n, "field", r.owner) for n, r in self.fields.items()]
        out += [(n, "evaluator", r.owner) for n, r in self.evaluators.items()]
        out += [(n, f"rule_kind:{r.obj.order}", r.owner) for n, r in self.rule_kinds.items()]
        out += [(n, "contact", owner) for n, r in self.contact_fields.items() for owner in r.owners]
        return sorted(out, key=lambda row: (row[1].split(":")[0], row[0]))

    def emit(self, event: EngineEvent) -> None:
        """Tell observers; an observer that raises is logged and ignored."""
        if not self.has_observers:
            return
        for impl in self._pm.hook.engine_event.get_hookimpls():
            try:
                impl.function(**({"event": event} if impl.argnames else {}))
            except Exception:  # observers must never break evaluation
                log.exception("engine_event observer %s failed", impl.plugin_name)


class SettingsView(Mapping[str, Any]):
    """A plugin's settings block, read-only, recording which keys the plugin asked for (to report the others
    as unknown) and the last one (to name the setting when the plugin refuses a value)."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)
        self.asked: set[str] = set()
        self.last: str | None = None

    def _ask(self, key: str) -> None:
        self.asked.add(key)
        self.last = key

    def __getitem__(self, key: str) -> Any:
        self._ask(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent); the plugin is recorded as knowing ``key``."""
        self._ask(key)
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._ask(key)
        return key in self._data

    def __iter__(self) -> Any:
        self.asked.update(self._data)  # a plugin that walks its settings knows every key
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def explain(self, plugin: str, exc: Exception) -> str:
        """The error for a value the plugin refused: ``plugins.<plugin>: <setting>: <why>``."""
        text = str(exc) or type(exc).__name__
        if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a KeyError's text is quoted
            text = text[1:-1]
        if any(text.startswith((f"{k}:", f"{k} ", f"{k}.", f"{k}[")) for k in self._data):  # names its setting
            return f"plugins.{plugin}: {text}"
        where = f"{self.last}: " if self.last in self._data else ""
        value = f" (given {self._data[self.last]!r})" if self.last in self._data else ""
        return f"plugins.{plugin}: {where}invalid setting{value}: {text}"


def settings_warnings(settings: Mapping[str, Mapping[str, Any]], views: Mapping[str, SettingsView],
                      loaded: list[str]) -> tuple[str, ...]:
    """A warning for each settings block naming no loaded plugin, and each key its plugin never asked for."""
    out = []
    for name, block in settings.items():
        view = views.get(name)
        if view is None and name in loaded:
            continue  # a loaded plugin without registration hooks: it reads its settings some other way
        if view is None:
            close = difflib.get_close_matches(name, loaded, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(f"plugins.{name}: no plugin of that name is loaded{hint}")
            continue
        for key in block:
            if key not in view.asked:
                close = difflib.get_close_matches(key, sorted(view.asked), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                out.append(f"plugins.{name}: unknown setting {key!r}{hint}")
    return tuple(out)


def _registered_by(plugin: LeftOut) -> dict[str, set[str]]:
    """What a left-out plugin registers on its own (no settings): ``{"channel": {...}, ...}``; nothing when it
    cannot be loaded or registered that way."""
    try:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(plugin.load(), name=plugin.name)
        reg = Registry.build(pm)
    except Exception:
        return {}
    return {"channel": set(reg.channels), "incentive type": set(reg.incentives), "optimizer": set(reg.optimizers),
            "rule kind": set(reg.rule_kinds), "contact field": set(reg.contact_fields)}


def unknown_kind(name: object, kinds: Mapping[str, Any]) -> str:
    """The message for a rule kind no plugin registered, listing the registered ones."""
    return f"unknown rule kind {name!r}; registered: {', '.join(sorted(kinds)) or 'none'}"


def _registrar(
    items: dict[str, Registered[Any]], owner: str, kind: str, key: str, proto: type,
    shared: dict[str, list[tuple[str, ContactField]]],
) -> Callable[[Any], None]:
    def register(obj: Any) -> None:
        if not isinstance(obj, proto):
            missing = [m for m in _members(proto) if not hasattr(obj, m)]
            raise PluginConflict(f"plugin {owner!r} registered a {kind} missing {', '.join(missing)}")
        name = getattr(obj, key)
        if kind != "field" and not _NAME.match(str(name)):
            raise PluginConflict(f"plugin {owner!r} registered {kind} {name!r}: names are lower_snake_case")
        if kind == "contact field":
            shared.setdefault(name, [])
            items[name] = _shared_contact(shared[name], obj, owner)
            return
        if name in items:
            raise PluginConflict(
                f"{kind} {name!r} is registered twice: by plugin {items[name].owner!r} and by plugin {owner!r}"
            )
        items[name] = Registered(obj, owner)

    return register


def _shared_contact(prior: list[tuple[str, ContactField]], field: ContactField, owner: str) -> Registered[ContactField]:
    """The contact field once ``owner`` registered it too (``prior``: the earlier registrations, extended): one
    field when all agree, with the region of whichever gives one; ``PluginConflict`` naming both plugins."""
    for other, earlier in prior:
        why = earlier.agrees_with(field)
        if why is not None:
            hint = "; give them the same default_region" if "region" in why else ""
            raise PluginConflict(f"contact field {field.name!r} is registered by plugin {other!r} and by plugin "
                                 f"{owner!r} {why}{hint}")
    if owner in (o for o, _ in prior):
        raise PluginConflict(f"contact field {field.name!r} is registered twice by plugin {owner!r}")
    prior.append((owner, field))
    region = next((f.region for _, f in prior if f.region), None)
    first = prior[0][1]
    merged = first if first.region == region else replace(first, region=region)
    return Registered(merged, prior[0][0], tuple(o for o, _ in prior[1:]))


def _members(proto: type) -> list[str]:
    names = list(getattr(proto, "__annotations__", {}))
    names += [n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")]
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]
