"""The one regular-expression dialect of rules (``matches``): RE2 syntax, run in linear time.

Per-recipient evaluators match with google-re2 (:func:`fullmatch`); the columnar evaluator hands polars
(Rust ``regex``) the translation :func:`to_polars`, which has the same meaning. Where the two engines
read the same text differently, the translation spells out the RE2 meaning: ``\\d \\w \\s \\b`` are ASCII
in RE2 (Unicode in Rust), escaped punctuation such as ``\\<`` is a literal in RE2 (a word boundary in
Rust), ``[a&&b]`` and ``[a--b]`` are plain characters in RE2 (set operations in Rust), and a ``{`` that
does not start a repetition is a literal. Constructs one engine cannot run are refused when the rule file
is loaded: backreferences and lookaround (RE2 cannot run them in linear time), ``\\C`` (one byte),
``\\Q…\\E`` and octal escapes (write ``\\x{..}``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are reported to the author, not logged to stderr
_PERL = {"d": "0-9", "w": "0-9A-Za-z_", "s": r"\t\n\f\r "}
_REPEAT = re.compile(r"\{\d+(,\d*)?\}")
_SIMPLE_ESCAPES = set("afnrtv")
_HINTS = (
    ("invalid perl operator: (?=", "lookahead (?=…) is not supported"),
    ("invalid perl operator: (?!", "lookahead (?!…) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=…) is not supported"),
    ("invalid perl operator: (?<!", "lookbehind (?<!…) is not supported"),
)


class RegexError(ValueError):
    """A pattern outside the rules' regex dialect; the message says what and why."""


def _hint(raw: str) -> str:
    for prefix, text in _HINTS:
        if raw.startswith(prefix):
            return text
    if re.fullmatch(r"invalid escape sequence: \\[1-9]", raw):
        return f"backreferences are not supported ({raw.split(': ')[1]})"
    return raw


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re2._Regexp:
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        raw = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexError(f"{_hint(raw)} (rules use RE2 syntax, which runs in linear time)") from None


def check(pattern: str) -> None:
    """Raise :class:`RegexError` unless every evaluator can run ``pattern`` with the same meaning."""
    if not isinstance(pattern, str):
        raise RegexError(f"a regular expression is text, not {pattern!r}")
    _compiled(pattern)
    _polars_accepts(to_polars(pattern))


@functools.lru_cache(maxsize=1024)
def _polars_accepts(rust_pattern: str) -> None:
    import polars as pl

    try:
        pl.Series([""], dtype=pl.String).str.contains(rust_pattern)
    except Exception as exc:  # polars reports a Rust regex error as ComputeError
        why = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("error:")), str(exc))
        raise RegexError(f"the columnar evaluator cannot run it ({why})") from None


@functools.lru_cache(maxsize=1024)
def fullmatch(pattern: str) -> Callable[[str], bool]:
    """A predicate: does the **whole** text match ``pattern`` (RE2, linear time)?"""
    check(pattern)
    rx = _compiled(pattern)
    return lambda text: rx.fullmatch(text) is not None


@functools.lru_cache(maxsize=1024)
def to_polars(pattern: str) -> str:
    """``pattern`` as a Rust-regex full match with RE2's meaning (for ``pl.Expr.str.contains``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            piece, i = _escape(pattern, i, in_class=False)
            out.append(piece)
        elif c == "[":
            piece, i = _char_class(pattern, i)
            out.append(piece)
        elif c == "{":
            m = _REPEAT.match(pattern, i)
            if m and out:
                out.append(m.group())
                i = m.end()
            else:
                out.append(r"\{")
                i += 1
        elif c == "}":
            out.append(r"\}")
            i += 1
        else:
            out.append(c)
            i += 1
    return r"\A(?:" + "".join(out) + r")\z"


def _escape(p: str, i: int, in_class: bool) -> tuple[str, int]:
    """Translate the escape starting at ``p[i] == '\\'``; returns the text and the next index."""
    if i + 1 >= len(p):
        raise RegexError("a pattern cannot end with a backslash")
    e = p[i + 1]
    if e in "dwsDWS":
        body = _PERL[e.lower()]
        if in_class:
            return (body if e.islower() else f"[^{body}]"), i + 2
        return (f"[{body}]" if e.islower() else f"[^{body}]"), i + 2
    if e in "bB" and not in_class:
        return rf"(?-u:\{e})", i + 2
    if e in "AzbB":
        return p[i:i + 2], i + 2
    if e in "pP":
        if i + 2 < len(p) and p[i + 2] == "{":
            end = p.find("}", i + 3)
            if end < 0:
                raise RegexError("unclosed \\p{…}")
            name = p[i + 3:end]
            if name.startswith("^"):  # RE2's negated property; Rust spells it with the other letter
                return f"\\{'P' if e == 'p' else 'p'}{{{name[1:]}}}", end + 1
            return p[i:end + 1], end + 1
        return p[i:i + 3], i + 3
    if e == "x":
        if i + 2 < len(p) and p[i + 2] == "{":
            end = p.find("}", i + 3)
            if end < 0:
                raise RegexError("unclosed \\x{…}")
            return p[i:end + 1], end + 1
        return p[i:i + 4], i + 4
    if e in _SIMPLE_ESCAPES:
        return p[i:i + 2], i + 2
    if e == "C":
        raise RegexError("\\C (one byte) is not supported; rules match text")
    if e in "QE":
        raise RegexError("\\Q…\\E quoting is not supported; escape each character with \\ instead")
    if e.isdigit():
        raise RegexError(f"octal escape \\{e} is not supported; write \\x{{..}} instead")
    if e.isascii() and not e.isalnum():
        return f"\\x{{{ord(e):x}}}", i + 2  # an escaped punctuation character is that character
    raise RegexError(f"unknown escape \\{e}")


def _class_char(p: str, i: int) -> tuple[str, int]:
    """One character of a class (literal or escape), written so Rust reads it as that one character."""
    c = p[i]
    if c == "\\":
        return _escape(p, i, in_class=True)
    if c.isascii() and not c.isalnum():
        return f"\\x{{{ord(c):x}}}", i + 1
    return c, i + 1


def _char_class(p: str, i: int) -> tuple[str, int]:
    """Translate the class starting at ``p[i] == '['`` (RE2 rules: a leading ``]`` or ``-`` is literal)."""
    n = len(p)
    out = ["["]
    i += 1
    if i < n and p[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < n and (p[i] != "]" or first):
        if p.startswith("[:", i):
            end = p.find(":]", i + 2)
            if end < 0:
                raise RegexError("unclosed [:class:]")
            out.append(p[i:end + 2])
            i = end + 2
        elif p[i] == "\\" and i + 1 < n and p[i + 1] in "dwsDWSpP":
            piece, i = _escape(p, i, in_class=True)
            out.append(piece)
        else:
            lo, i = _class_char(p, i)
            if i + 1 < n and p[i] == "-" and p[i + 1] != "]":
                hi, i = _class_char(p, i + 1)
                out.append(f"{lo}-{hi}")
            else:
                out.append(lo)
        first = False
    if i >= n:
        raise RegexError("missing ] at the end of a character class")
    out.append("]")
    return "".join(out), i + 1
