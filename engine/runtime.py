"""The engine façade: plugins → registry → field catalogue, and the operations the CLI and service use."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import MessageFileError, ValidationFailed
from engine.fields import FieldCatalogue, build_catalogue, load_org_fields
from engine.messages import load_message
from engine.model import Message
from engine.plugin_manager import make_plugin_manager
from engine.registry import Registry
from engine.rulefiles.ir import Ruleset
from engine.rulefiles.loader import load_ruleset
from engine.sharing import shared_conflicts
from engine.sourcefile import read_source

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


def contact_regions(registry: Registry) -> dict[str, str]:
    """Phone attribute → the region its numbers without ``+`` are read in, from the channels' optional
    ``contact_regions`` (``{"phone": "GB"}``: their ``default_region`` setting). Two channels reading one
    attribute in different regions is a configuration error (``ValueError`` naming both)."""
    out: dict[str, tuple[str, str]] = {}
    for name, entry in registry.channels.items():
        for attribute, region in (getattr(entry.obj, "contact_regions", None) or {}).items():
            if not region:
                continue
            prior = out.setdefault(attribute, (str(region).upper(), name))
            if prior[0] != str(region).upper():
                raise ValueError(f"channels {prior[1]} and {name} read {attribute} numbers without + in different "
                                 f"regions ({prior[0]}, {str(region).upper()}); give them the same default_region")
    return {attribute: region for attribute, (region, _) in out.items()}


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
        return cls(registry, build_catalogue((r.obj for r in registry.fields.values()), org, contact_regions(registry)))

    def with_fields_for(self, path: str | Path) -> Herald:
        """The same engine with the org field catalogue found for ``path`` (see :func:`find_fields_file`)."""
        found = find_fields_file(path)
        if found is None:
            return self
        org = load_org_fields(found)
        catalogue = build_catalogue((r.obj for r in self.registry.fields.values()), org, self.catalogue.regions)
        return Herald(self.registry, catalogue, self.loaded)

    def load_ruleset(self, path: str | Path) -> Ruleset:
        """Load and check one rule file against this engine's fields and channels."""
        return load_ruleset(path, self.catalogue, channels=set(self.registry.channels))

    def load_message(self, path: str | Path) -> Message:
        """Load and validate a message file (and the rule files it names), and check it against the messages
        loaded before it (:func:`engine.sharing.shared_conflicts`)."""
        message = load_message(path, self.registry, self.catalogue)
        problems = shared_conflicts(message, self.loaded.values(), self.registry)
        if problems:
            raise MessageFileError(problems, f"{message.source}: conflicts with a message loaded before it")
        self.loaded[message.id] = message
        return message
