"""Liquid templating (python-liquid): strict rendering and static analysis of the variables a template uses.

Strict means an undefined variable is an error for that recipient, never an empty string; the only
way to allow a missing value is an explicit `| default: ...` filter. Templates are
parsed once and cached by their source text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from liquid import Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError

from engine.errors import TemplateError
from engine.model import Issue

_ENV = Environment(undefined=StrictDefaultUndefined, autoescape=False)


@lru_cache(maxsize=4096)
def parse(source: str) -> Any:
    """The parsed template (cached); ``TemplateError`` says where the syntax is wrong."""
    try:
        return _ENV.from_string(source)
    except LiquidError as exc:
        raise TemplateError(_describe(exc)) from None


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source`` with ``context``; an undefined variable raises ``TemplateError``."""
    try:
        return parse(source).render(**context)
    except LiquidError as exc:
        raise TemplateError(_describe(exc)) from None


@lru_cache(maxsize=4096)
def variables(source: str) -> frozenset[str]:
    """The dotted paths of the global variables ``source`` reads (loop variables excluded)."""
    return frozenset(parse(source).global_variable_paths())


def render_content(content: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a nested content structure (dicts, lists) with ``context``."""
    if isinstance(content, str):
        return render(content, context) if ("{{" in content or "{%" in content) else content
    if isinstance(content, Mapping):
        return {k: render_content(v, context) for k, v in content.items()}
    if isinstance(content, (list, tuple)):
        return [render_content(v, context) for v in content]
    return content


def template_strings(content: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """(path, text) for every string in a nested content structure, paths like ``body`` or ``buttons[0].url``."""
    if isinstance(content, str):
        yield path, content
    elif isinstance(content, Mapping):
        for k, v in content.items():
            yield from template_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(content, (list, tuple)):
        for i, v in enumerate(content):
            yield from template_strings(v, f"{path}[{i}]")


def check_tags(
    content: Mapping[str, Any],
    known: Iterable[str],
    required: Iterable[str] = (),
    *,
    prefix: str = "content",
) -> tuple[list[Issue], set[str]]:
    """Validate the tags of a creative's content.

    :param known: allowed variable paths; an entry ``customer.*`` allows any path below ``customer``.
    :param required: tags that must appear somewhere in the content (e.g. ``optout`` for SMS).
    :return: (issues, every variable path used).
    """
    issues: list[Issue] = []
    used: set[str] = set()
    exact = {k for k in known if not k.endswith(".*")}
    prefixes = tuple(k[:-1] for k in known if k.endswith(".*"))
    for path, text in template_strings(content):
        where = f"{prefix}.{path}" if path else prefix
        try:
            names = variables(text)
        except TemplateError as exc:
            issues.append(Issue(where, "template_syntax", str(exc)))
            continue
        for name in sorted(names):
            used.add(name)
            if name not in exact and not name.startswith(prefixes) and not any(name.startswith(e + ".") for e in exact):
                issues.append(Issue(where, "unknown_tag", f"unknown tag {{{{ {name} }}}}"))
    for tag in required:
        if not any(u == tag or u.startswith(tag + ".") for u in used):
            issues.append(Issue(prefix, "missing_required_tag", f"the {{{{ {tag} }}}} tag is required"))
    return issues, used


def _describe(exc: LiquidError) -> str:
    msg = getattr(exc, "message", None) or str(exc).splitlines()[0]
    token = getattr(exc, "token", None)
    source, index = getattr(token, "source", None), getattr(token, "start_index", None)
    if isinstance(source, str) and isinstance(index, int):
        line = source.count("\n", 0, index) + 1
        col = index - (source.rfind("\n", 0, index) + 1) + 1
        return f"{msg} (line {line}, column {col})"
    return msg
