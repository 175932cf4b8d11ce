"""Reads YAML/JSON data files keeping the line and column of every value, for precise error messages.

Files are hostile until checked (rule, message, settings and field files all come through here): a file
larger than :func:`max_file_bytes` (``HERALD_MAX_FILE_BYTES``, default 1 MiB), YAML aliases and anchors
(the "billion laughs" expansion), and nesting deeper than :data:`MAX_DEPTH` are refused with the place at
fault, before anything is built from the text; nothing here recurses as deep as the input nests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, ValidationFailed

Pos = tuple[int, int]
#: libyaml's parser when PyYAML was built with it (same marks and errors, several times faster)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: the deepest nesting of mappings and lists a data file may have
MAX_DEPTH = 64
#: the default largest data file, in bytes (``HERALD_MAX_FILE_BYTES`` overrides it)
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
_STD = "tag:yaml.org,2002:"
#: the explicit tags a data file may use (``!!str 2026`` keeps text as text); others build types Herald has no use for
_TAGS = {"!", *(_STD + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp"))}
_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def max_file_bytes() -> int:
    """The largest data file accepted: ``HERALD_MAX_FILE_BYTES`` (a positive integer), else 1 MiB."""
    raw = os.environ.get("HERALD_MAX_FILE_BYTES")
    if raw is None or not raw.strip():
        return DEFAULT_MAX_FILE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValidationFailed([Problem(f"HERALD_MAX_FILE_BYTES must be a positive number of bytes, not {raw!r}",
                                        "settings")], "HERALD_MAX_FILE_BYTES: invalid")
    return value


def _too_large(size: int, file: str) -> ValidationFailed:
    limit = max_file_bytes()
    return ValidationFailed([Problem(f"the file is {size:,} bytes, over the limit of {limit:,} bytes "
                                     "(HERALD_MAX_FILE_BYTES)", "too_large", file)], f"{file}: file too large")


@dataclass
class SourceData:
    """Parsed data plus a map from a path (tuple of keys/indexes) to its 1-based (line, column)."""

    data: Any
    file: str
    positions: dict[tuple[Any, ...], Pos] = field(default_factory=dict)

    def problem(self, message: str, loc: Sequence[Any] = (), code: str = "invalid", label: str | None = None) -> Problem:
        """A Problem at the deepest known position along ``loc`` (keys that are not in the data are skipped)."""
        path, node = [], self.data
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                path.append(part)
        line, col = self.positions.get(tuple(path), (None, None))
        return Problem(message, code, self.file, line, col, label if label is not None else dotted(path))


def dotted(path: Sequence[Any]) -> str:
    """``('rules', 0, 'when')`` → ``rules[0].when``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_text(text: str, file: str) -> SourceData:
    """Parse YAML (or JSON, a subset) text; a syntax error raises ValidationFailed with line and column.

    Text over the size limit, YAML aliases or anchors, and nesting deeper than :data:`MAX_DEPTH` are refused.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_file_bytes():
        raise _too_large(size, file)
    loader = _LOADER(text)
    try:
        _check_events(text, file)
        node = loader.get_single_node()
        if node is None:
            return SourceData(None, file)
        positions: dict[tuple[Any, ...], Pos] = {}
        _walk(node, (), positions)
        try:
            data = loader.construct_document(node)
        except (ValueError, OverflowError) as exc:  # a value its tag cannot build: 2026-13-01, a 5,000-digit int
            raise _unbuildable(node, exc, file) from None
    except yaml.YAMLError as exc:
        if file.endswith(".json"):
            _check_json_depth(text, file)
            try:
                return SourceData(json.loads(text), file)
            except json.JSONDecodeError as jexc:
                raise ValidationFailed([Problem(jexc.msg, "syntax", file, jexc.lineno, jexc.colno)],
                                       f"{file}: not valid JSON") from None
            except ValueError as vexc:  # only a number too long to convert gets here
                raise ValidationFailed([Problem(f"a number cannot be read ({_reason(vexc)})", "value", file)],
                                       f"{file}: not valid JSON") from None
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        raise ValidationFailed(
            [Problem(str(what), "syntax", file, mark.line + 1 if mark else None, mark.column + 1 if mark else None)],
            f"{file}: not valid YAML",
        ) from None
    finally:
        loader.dispose()
    return SourceData(data, file, positions)


def read_source(path: str | Path) -> SourceData:
    """Read and parse a YAML or JSON file (UTF-8, BOM tolerated)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ValidationFailed([Problem("is a folder; give the path of a YAML or JSON file", "not_a_file", str(p))],
                                   f"{p}: a folder, not a file")
        size = p.stat().st_size
        if size > max_file_bytes():
            raise _too_large(size, str(p))
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationFailed([Problem("file not found", "not_found", str(p))], f"{p}: file not found") from None
    except PermissionError:
        raise ValidationFailed([Problem("permission denied; check the file's permissions", "unreadable", str(p))],
                               f"{p}: cannot read") from None
    except UnicodeDecodeError as exc:
        raise ValidationFailed([Problem(f"not UTF-8 text ({exc.reason} at byte {exc.start})", "encoding", str(p))],
                               f"{p}: not UTF-8") from None
    return parse_text(text, str(p))


def _walk(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], Pos]) -> None:
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            _walk(value_node, (*path, key), out)
            out[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), out)


def _refused(message: str, code: str, file: str, mark: Any) -> ValidationFailed:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return ValidationFailed([Problem(message, code, file, line, col)], f"{file}: refused")


def _check_events(text: str, file: str) -> None:
    """Refuse aliases, anchors, tags other than the standard ones and deep nesting from the event stream,
    before any node is composed."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _TAGS:
            shown = "!!" + tag.removeprefix(_STD) if tag.startswith(_STD) else tag
            raise _refused(f"the YAML tag {shown} is not allowed; write plain text, numbers, true/false, lists "
                           "and mappings", "yaml_tag", file, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise _refused(f"YAML aliases are not allowed (*{event.anchor}); write the value out in full",
                           "yaml_alias", file, event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _refused(f"YAML aliases are not allowed (anchor &{event.anchor}); write the value out in full",
                           "yaml_alias", file, event.start_mark)
        if isinstance(event, _START):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refused(f"nested deeper than the limit of {MAX_DEPTH} levels", "too_deep", file,
                               event.start_mark)
        elif isinstance(event, _END):
            depth -= 1


def _unbuildable(root: yaml.Node, exc: Exception, file: str) -> ValidationFailed:
    """The error for the first scalar of ``root`` its tag cannot build (found again one scalar at a time)."""
    builder = yaml.constructor.SafeConstructor()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        else:
            try:
                builder.construct_object(node)
            except (ValueError, OverflowError) as found:
                return _refused(_value_problem(node, found), "value", file, node.start_mark)
    return ValidationFailed([Problem(f"a value cannot be read ({_reason(exc)})", "value", file)], f"{file}: refused")


def _value_problem(node: yaml.Node, exc: Exception) -> str:
    text = str(node.value)
    value = text if len(text) <= 40 else text[:40] + "…"
    kind = node.tag.removeprefix(_STD)
    if kind == "timestamp":
        timed = len(node.value.strip()) > 10
        what, form = ("date-time", "YYYY-MM-DDTHH:MM:SS+HH:MM") if timed else ("date", "YYYY-MM-DD")
        return f"not a valid {what}: {value} ({_reason(exc)}); write {form}, or quote the value if it is text"
    what = "number" if kind in ("int", "float") else "value"
    return f"not a valid {what}: {value} ({_reason(exc)}); quote the value if it is text"


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "more than 4,300 digits" if "integer string conversion" in text else text


def too_deep(text: str, limit: int = MAX_DEPTH) -> Pos | None:
    """The 1-based (line, column) of the first ``[`` or ``{`` of JSON ``text`` nested deeper than ``limit``
    (``None`` when none is); a linear scan, for text that ``json.loads`` would otherwise recurse into."""
    if text.count("[") + text.count("{") <= limit:
        return None
    depth, in_string, escaped, line, line_start = 0, False, False, 1, 0
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line, i - line_start + 1
        elif ch in "]}":
            depth -= 1
        elif ch == "\n":
            line, line_start = line + 1, i + 1
    return None


def _check_json_depth(text: str, file: str) -> None:
    where = too_deep(text)
    if where is not None:
        raise ValidationFailed([Problem(f"nested deeper than the limit of {MAX_DEPTH} levels", "too_deep", file,
                                        *where)], f"{file}: refused")


def check_depth(data: Any, file: str) -> None:
    """Refuse in-memory data (API payloads) nested deeper than :data:`MAX_DEPTH`, without recursing."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                raise ValidationFailed([Problem(f"nested deeper than the limit of {MAX_DEPTH} levels", "too_deep",
                                                file)], f"{file}: refused")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
