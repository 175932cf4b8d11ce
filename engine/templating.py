"""Liquid templating (python-liquid): strict rendering and static analysis of the templates of a creative.

Strict means an undefined variable is an error for that recipient, never an empty string; the only
way to allow a missing value is an explicit `| default: ...` filter. Templates are
parsed once and cached by their source text.

HTML fields (``render(..., html=True)``) autoescape: every value a template outputs is HTML-escaped,
while the template's own literal text and string literals (the marketer's HTML) are kept. The ``safe``
filter, which would switch escaping off for a value, is refused at load (``unsafe_filter``).

Compulsory tags (a channel's ``required_tags``, e.g. ``{{ optout }}``) must be output unconditionally:
a plain ``{{ tag }}`` at the top level of the template, never inside ``if``/``unless``/``case``/``for``,
never captured or assigned, never filtered, and never re-bound (:func:`required_tag_issues`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from engine.errors import TemplateError
from engine.lazy import lazy
from engine.model import Issue

if TYPE_CHECKING:
    import liquid
    from liquid import Environment
    from liquid.exceptions import LiquidError
else:  # python-liquid is imported when a template is first parsed, not with the plugins
    liquid = lazy("liquid")


@cache
def _env(html: bool = False) -> Environment:
    """The strict Liquid environment (``html``: output values autoescaped)."""
    return liquid.Environment(undefined=liquid.StrictDefaultUndefined, autoescape=html)


def _liquid_error() -> type[LiquidError]:
    """python-liquid's error class (looked up when an ``except`` clause is reached)."""
    from liquid.exceptions import LiquidError

    return LiquidError


def _nodes() -> Any:
    """python-liquid's parse-tree classes this module inspects."""
    from liquid.builtin import expressions, output

    return expressions, output
#: Filters a creative may not use: ``safe`` would let customer data into HTML unescaped.
FORBIDDEN_FILTERS = frozenset({"safe"})
#: Tags that need template files, which Herald does not load.
UNSUPPORTED_TAGS = frozenset({"include", "render"})


@lru_cache(maxsize=4096)
def parse(source: str, html: bool = False) -> Any:
    """The parsed template (cached); ``TemplateError`` says where the syntax is wrong.

    :param html: parse for an HTML field (output values are autoescaped when rendered).
    """
    try:
        return _env(html).from_string(source)
    except _liquid_error() as exc:
        raise TemplateError(_describe(exc)) from None


def render(source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """Render ``source`` with ``context``; an undefined variable raises ``TemplateError``.

    :param html: HTML-escape every output value (the template's literal markup is kept).
    """
    try:
        return str(parse(source, html).render(**context))
    except _liquid_error() as exc:
        raise TemplateError(_describe(exc)) from None


@lru_cache(maxsize=4096)
def variables(source: str) -> frozenset[str]:
    """The dotted paths of the global variables ``source`` reads (loop variables excluded)."""
    try:
        return frozenset(parse(source).global_variable_paths(include_partials=False))
    except _liquid_error() as exc:
        raise TemplateError(_describe(exc)) from None


def render_content(content: Any, context: Mapping[str, Any], *, html: Iterable[str] = ()) -> Any:
    """Render every string inside a nested content structure (dicts, lists) with ``context``.

    :param html: top-level keys of ``content`` that are HTML (rendered with autoescape).
    """
    html = frozenset(html)
    if html and isinstance(content, Mapping):
        return {k: _render_any(v, context, k in html) for k, v in content.items()}
    return _render_any(content, context, False)


def _render_any(content: Any, context: Mapping[str, Any], html: bool) -> Any:
    if isinstance(content, str):
        return render(content, context, html=html) if ("{{" in content or "{%" in content) else content
    if isinstance(content, Mapping):
        return {k: _render_any(v, context, html) for k, v in content.items()}
    if isinstance(content, (list, tuple)):
        return [_render_any(v, context, html) for v in content]
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
    required_in: Iterable[str] | None = None,
) -> tuple[list[Issue], set[str]]:
    """Validate the tags and filters of a creative's content.

    :param known: allowed variable paths; an entry ``customer.*`` allows any path below ``customer``.
    :param required: tags that must be output unconditionally (e.g. ``optout`` for SMS), see
        :func:`required_tag_issues`.
    :param required_in: content fields that must each output every required tag (when present);
        by default one field of the content must.
    :return: (issues, every variable path used).
    """
    issues: list[Issue] = []
    used: set[str] = set()
    known = list(known)
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
                issues.append(_unknown_tag(where, name, exact))
        issues += [Issue(where, code, msg) for code, msg in _filter_and_tag_problems(text)]
    issues += required_tag_issues(content, required, prefix=prefix, fields=required_in)
    return issues, used


def _unknown_tag(where: str, name: str, exact: set[str]) -> Issue:
    close = difflib.get_close_matches(name, sorted(exact), n=1)
    hint = f"; did you mean {{{{ {close[0]} }}}}?" if close else ""
    if name.startswith("vars."):
        return Issue(where, "unknown_var", f"unknown tag {{{{ {name} }}}}: no rule of this message sets "
                                           f"{name.split('.')[1]!r} in its then.vars{hint}")
    return Issue(where, "unknown_tag", f"unknown tag {{{{ {name} }}}}{hint}")


def _filter_and_tag_problems(text: str) -> list[tuple[str, str]]:
    """(code, message) for unknown or forbidden filters and unsupported tags, with line and column."""
    analysis = parse(text).analyze(include_partials=False)
    out = []
    for name, spans in analysis.filters.items():
        where = _position(text, spans[0].index)
        if name in FORBIDDEN_FILTERS:
            out.append(("unsafe_filter", f"the {name!r} filter is not allowed: customer data is always escaped "
                                         f"in HTML; write literal HTML in the template instead ({where})"))
        elif name not in _env().filters:
            out.append(("unknown_filter", f"unknown filter {name!r} ({where})"))
    for name, spans in analysis.tags.items():
        if name in UNSUPPORTED_TAGS:
            out.append(("unsupported_tag", f"the {{% {name} %}} tag needs template files, which Herald does not "
                                           f"load ({_position(text, spans[0].index)})"))
    return out


def required_tag_issues(
    content: Mapping[str, Any],
    required: Iterable[str],
    *,
    prefix: str = "content",
    fields: Iterable[str] | None = None,
) -> list[Issue]:
    """Issues for compulsory tags not output unconditionally.

    Every use of a required tag must be a plain ``{{ tag }}`` at the top level of its template: inside a
    block tag (``conditional_required_tag``), captured or assigned (``assigned_required_tag``), filtered or
    in a ternary (``filtered_required_tag``), or re-bound by ``assign``/``capture``/``for``
    (``rebound_required_tag``) it may not reach the recipient. Each field of ``fields`` present in
    ``content`` must output the tag (``missing_required_tag``); without ``fields``, one field must.
    """
    required = tuple(required)
    if not required:
        return []
    if fields is None:
        texts = list(template_strings(content))
    else:
        texts = [(f, content[f]) for f in fields if isinstance(content.get(f), str)]
    issues: list[Issue] = []
    for tag in required:
        found = False
        for path, text in texts:
            where = f"{prefix}.{path}" if path else prefix
            try:
                clean, bad = tag_outputs(text, tag)
            except TemplateError:
                continue  # reported as template_syntax
            issues += [Issue(where, code, msg) for code, msg in bad]
            found = found or clean > 0 or bool(bad)
            if fields is not None and not clean and not bad:
                issues.append(Issue(where, "missing_required_tag", f"the {{{{ {tag} }}}} tag is required"))
        if fields is None and not found:
            issues.append(Issue(prefix, "missing_required_tag", f"the {{{{ {tag} }}}} tag is required"))
    return issues


def tag_outputs(source: str, tag: str) -> tuple[int, list[tuple[str, str]]]:
    """How ``source`` uses the variable ``tag``: (plain top-level outputs, [(code, message) of other uses]).

    Walks python-liquid's parse tree: the template's top-level nodes always render; anything below a
    block tag may not.
    """
    template = parse(source)
    static = liquid.RenderContext(template)
    clean = 0
    bad: list[tuple[str, str]] = []
    for node in template.nodes:
        if isinstance(node, _nodes()[1].OutputNode) and _plain_output(node.expression, tag):
            clean += 1
            continue
        for inner, index in _uses(node, tag, static):
            bad.append(_classify(source, tag, node, inner, index))
    return clean, bad


def _plain_output(expression: Any, tag: str) -> bool:
    return (type(expression) is _nodes()[0].FilteredExpression and not expression.filters
            and isinstance(expression.left, _nodes()[0].Path) and list(expression.left.path) == [tag])


def _uses(node: Any, tag: str, static: liquid.RenderContext) -> Iterator[tuple[Any, int]]:
    """(node, source index) of every read or binding of ``tag`` in ``node`` and below it."""
    bound = [*node.template_scope(), *node.block_scope()]
    for name in bound:
        if str(name) == tag:
            yield node, -1 - node.token.start_index  # negative: a binding, not a read
    for expression in node.expressions():
        for path in _paths(expression):
            if path.path and path.path[0] == tag:
                yield node, path.token.start_index
    for child in node.children(static, include_partials=False):
        yield from _uses(child, tag, static)


def _paths(expression: Any) -> Iterator[Any]:
    if isinstance(expression, _nodes()[0].Path):
        yield expression
    for child in expression.children():
        yield from _paths(child)


def _classify(source: str, tag: str, top: Any, inner: Any, index: int) -> tuple[str, str]:
    """(code, message) for a use of ``tag`` in the top-level node ``top``."""
    shown = f"{{{{ {tag} }}}}"
    if index < 0:
        return ("rebound_required_tag", f"{shown} may not be re-assigned or used as a loop variable "
                                        f"({_position(source, -1 - index)})")
    where = _position(source, index)
    if top is inner and isinstance(top, _nodes()[1].OutputNode):
        return ("filtered_required_tag", f"{shown} must be output as is, without filters or conditions: "
                                         f"write {shown} ({where})")
    name = getattr(top.token, "value", "") or "tag"
    if name in ("assign", "capture"):
        return ("assigned_required_tag", f"{shown} may not be used in {{% {name} %}}: output it directly "
                                         f"with {shown} ({where})")
    return ("conditional_required_tag", f"{shown} must be output unconditionally, not inside "
                                        f"{{% {name} %}} ({where})")


def missing_values(payload: Any, values: Mapping[str, str]) -> list[Issue]:
    """A ``compliance`` issue for each compulsory value (tag name → text) no string of ``payload`` contains."""
    texts = [t for _, t in template_strings(payload)]
    return [Issue(tag, "compliance", f"the rendered message lacks the {{{{ {tag} }}}} text {value!r}")
            for tag, value in values.items() if not any(value in t for t in texts)]


def _position(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    col = index - (source.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {col}"


def _describe(exc: LiquidError) -> str:
    msg = getattr(exc, "message", None) or str(exc).splitlines()[0]
    token = getattr(exc, "token", None)
    source, index = getattr(token, "source", None), getattr(token, "start_index", None)
    if isinstance(source, str) and isinstance(index, int):
        return f"{msg} ({_position(source, index)})"
    return msg
