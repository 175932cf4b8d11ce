"""Modules imported on first use, so that commands which never touch a frame (``herald --help``,
``herald plugins``, checking a message) start without loading polars.

Use it as ``pl = lazy("polars")`` under ``if not TYPE_CHECKING`` (type checkers see the real import)."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute read imports it (then it is a dict lookup)."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> Any:
    """The module ``name``, imported when first used."""
    return LazyModule(name)
