"""The composition root: the engine over the default plugins, and the app over ``HERALD_*`` settings.

Only this module (and the CLI) joins the service to ``plugins``; ``service.http`` sees plugins through the
engine's registry. ``uvicorn --factory service.main:app_from_env`` serves the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.runtime import Herald
from service.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar


def build_herald(settings: Settings) -> Herald:
    """The engine: the default plugins and installed ones, the plugin settings file and the field catalogue."""
    from engine.runtime import load_settings
    from plugins import DEFAULT_PLUGINS

    plugin_settings = load_settings(settings.plugin_settings) if settings.plugin_settings else {}
    return Herald.build(DEFAULT_PLUGINS, settings=plugin_settings, fields_file=settings.fields_file)


def build_app(settings: Settings) -> Litestar:
    """The HTTP app for ``settings`` (refuses an unmigrated database, naming ``herald migrate``)."""
    from service.http.app import create_app

    return create_app(settings, build_herald(settings))


def app_from_env() -> Litestar:
    """The app from the process environment (for ``uvicorn --factory``)."""
    return build_app(Settings.from_env())
