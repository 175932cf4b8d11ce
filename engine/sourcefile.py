"""Reads YAML/JSON data files keeping the line and column of every value, for precise error messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, ValidationFailed

Pos = tuple[int, int]
#: libyaml's parser when PyYAML was built with it (same marks and errors, several times faster)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    """Parse YAML (or JSON, a subset) text; a syntax error raises ValidationFailed with line and column."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return SourceData(None, file)
        positions: dict[tuple[Any, ...], Pos] = {}
        _walk(node, (), positions)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        if file.endswith(".json"):
            try:
                return SourceData(json.loads(text), file)
            except json.JSONDecodeError as jexc:
                raise ValidationFailed([Problem(jexc.msg, "syntax", file, jexc.lineno, jexc.colno)],
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
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationFailed([Problem("file not found", "not_found", str(p))], f"{p}: file not found") from None
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
