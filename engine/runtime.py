"""The engine façade: plugins → registry → field catalogue, and the operations the CLI and service use."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.contracts import Evaluator
from engine.errors import MessageFileError, ValidationFailed
from engine.fields import FieldCatalogue, build_catalogue, load_org_fields
from engine.messages import RulesetResolver, load_message, load_message_data
from engine.model import Customer, Message
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.rulefiles.ir import Ruleset
from engine.rulefiles.loader import load_ruleset
from engine.sharing import shared_conflicts
from engine.sourcefile import read_source
from engine.stores import LedgerStore

if TYPE_CHECKING:
    import polars as pl

    from engine.run import Prepared, Run

FIELDS_FILE = "fields.yaml"


def load_settings(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Per-plugin settings from a YAML file (``HERALD_SETTINGS``): ``plugins: {plugin-name: {...}}``.

    A value written ``$env:NAME`` is read from the environment, so secrets stay out of the file.
    """
    path = path or os.environ.get("HERALD_SETTINGS")
    if not path:
        return {}
    src = read_source(path)
    data = src.data or {}
    if not isinstance(data, dict) or not isinstance(data.get("plugins", {}), dict):
        raise ValidationFailed([src.problem("settings are a mapping with a 'plugins' mapping", code="shape")])
    problems = []
    out: dict[str, dict[str, Any]] = {}
    for name, block in (data.get("plugins") or {}).items():
        if not isinstance(block, dict):
            problems.append(src.problem("a plugin's settings are a mapping", ("plugins", name), "shape"))
            continue
        resolved = {}
        for key, value in block.items():
            if isinstance(value, str) and value.startswith("$env:"):
                var = value[5:]
                if var not in os.environ:
                    problems.append(src.problem(f"environment variable {var} is not set", ("plugins", name, key), "env"))
                    continue
                value = os.environ[var]
            resolved[key] = value
        out[name] = resolved
    if problems:
        raise ValidationFailed(problems, f"{src.file}: invalid settings")
    return out


def find_fields_file(start: str | Path) -> Path | None:
    """``HERALD_FIELDS``, else the nearest ``fields.yaml`` in ``start``'s folder or above it."""
    env = os.environ.get("HERALD_FIELDS")
    if env:
        return Path(env)
    here = Path(start).resolve()
    for folder in [here if here.is_dir() else here.parent, *here.parents]:
        candidate = folder / FIELDS_FILE
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Herald:
    """A configured engine: the plugin registry and the field catalogue rules are checked against.

    ``loaded`` keeps the messages this engine loaded (by id), so that a message sharing a resource (a coupon
    series) with another under different settings is refused at load, naming both.
    """

    registry: Registry
    catalogue: FieldCatalogue
    loaded: dict[str, Message] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        defaults: Iterable[Any] = (),
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        fields_file: str | Path | None = None,
        entry_points: bool = True,
    ) -> Herald:
        """Build the registry from ``defaults`` (e.g. ``plugins.DEFAULT_PLUGINS``) and entry points.

        :param settings: per-plugin settings; by default read from the ``HERALD_SETTINGS`` file.
        """
        settings = load_settings() if settings is None else settings
        registry = Registry.build(make_plugin_manager(defaults, entry_points=entry_points), settings)
        org = load_org_fields(fields_file) if fields_file else []
        return cls(registry, build_catalogue((r.obj for r in registry.fields.values()), org, registry.contacts.values()))

    def with_fields_for(self, path: str | Path) -> Herald:
        """The same engine with the org field catalogue found for ``path`` (see :func:`find_fields_file`)."""
        found = find_fields_file(path)
        if found is None:
            return self
        org = load_org_fields(found)
        catalogue = build_catalogue((r.obj for r in self.registry.fields.values()), org, self.registry.contacts.values())
        return Herald(self.registry, catalogue, self.loaded)

    def load_ruleset(self, path: str | Path) -> Ruleset:
        """Load and check one rule file against this engine's rule kinds, fields and channels."""
        return load_ruleset(path, self.catalogue, kinds=self.registry.kinds, channels=set(self.registry.channels))

    def load_message(self, path: str | Path) -> Message:
        """Load and validate a message file (and the rule files it names), and check it against the messages
        loaded before it (:func:`engine.sharing.shared_conflicts`)."""
        return self._admit(load_message(path, self.registry, self.catalogue))

    def load_message_data(self, data: Mapping[str, Any] | str, *, resolver: RulesetResolver,
                          source: str = "<api>") -> Message:
        """Load and validate a message held as data (a mapping, or YAML/JSON text), its rulesets given by
        ``resolver`` (:class:`engine.messages.RulesetResolver`: e.g. stored rulesets by name and version);
        checked against the messages loaded before it like :meth:`load_message`."""
        return self._admit(load_message_data(data, self.registry, self.catalogue, resolver=resolver, source=source))

    def _admit(self, message: Message) -> Message:
        problems = shared_conflicts(message, self.loaded.values(), self.registry)
        if problems:
            raise MessageFileError(problems, f"{message.source}: conflicts with a message loaded before it")
        self.loaded[message.id] = message
        return message

    def evaluate(
        self,
        message: Message,
        audience: pl.DataFrame | Sequence[Customer],
        *,
        at: datetime,
        mode: str = "auto",
        evaluator: str | Evaluator = "compiled",
        explain: bool = False,
        render: bool = False,
        preview: bool = True,
        history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        default_tz: str = "UTC",
        ledger: LedgerStore | None = None,
    ) -> Run:
        """Evaluate ``message`` for ``audience``: the one way in for the CLI, the service and the workers.

        :param audience: a polars frame of ``customer.*`` columns (as :func:`engine.columnar.read_frame`
            reads audience files), or Customer objects.
        :param at: "now" (time zone required): a send before it is an error, a recurring message runs its
            next occurrence at or after it. ``time.*`` facts describe each recipient's planned send instant.
        :param mode: the execution strategy: ``auto`` (default), ``per_recipient`` or ``bulk``
            (:mod:`engine.run` says how ``auto`` chooses). A mode that cannot serve the other options raises
            ``ModeError``; it is never switched silently.
        :param evaluator: the rule interpreter: a registered name (``compiled``, the default; ``reference``,
            ``durable``; ``columnar``, which runs only in bulk) or an Evaluator object (per recipient only).
        :param explain: record a step-by-step trace in every decision (per recipient only).
        :param render: render the chosen channel's creative for each included recipient (per recipient only).
        :param preview: reserve nothing (coupons are previewed, not taken); ``False`` runs per recipient only.
        :param history: send history (customer id → ``[{"channel", "sent_at"}]``) for frequency caps.
        :param ledger: where incentives are reserved (default: the registry's store).
        :returns: a :class:`engine.run.Run`: its decisions as objects, a frame or NDJSON, and its summary.
        """
        from engine.run import start_run

        return start_run(self.registry, message, audience, at=at, mode=mode, evaluator=evaluator, explain=explain,
                         render=render, preview=preview, history=history, default_tz=default_tz, ledger=ledger)

    def prepare(
        self,
        message: Message,
        *,
        at: datetime,
        evaluator: str | Evaluator = "compiled",
        explain: bool = False,
        render: bool = False,
        preview: bool = True,
        history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        default_tz: str = "UTC",
        ledger: LedgerStore | None = None,
    ) -> Prepared:
        """``message`` ready to decide one recipient at a time as of ``at``: ``.decide(customer)`` gives what
        ``evaluate(message, [customer], at=at, mode="per_recipient", …)`` would, without a run's set-up
        (what an HTTP endpoint deciding one recipient per request keeps per message version; see
        :class:`engine.run.Prepared`). Options as for :meth:`evaluate`; ``ModeError`` for a bulk-only evaluator.
        """
        from engine.run import Prepared

        return Prepared(message, self.registry, at=at, evaluator=evaluator, explain=explain, render=render,
                        preview=preview, history=history, default_tz=default_tz, ledger=ledger)
