"""Decisions as a polars frame and as NDJSON text, the same for both execution modes.

The decision frame has one row per recipient and the columns ``customer``, ``included``, ``excluded_reason``,
``variant``, ``channel``, ``fallbacks`` (List(String)), ``incentive`` and ``rendered`` (JSON text or null),
``send_at`` (Datetime UTC), ``trace`` (JSON text) and one ``fired:<ruleset name>`` List(String) per
ruleset of the message (null when the ruleset did not run for that recipient), in pipeline order.

NDJSON: one line per decision, ``json.dumps(decision.as_dict(), ensure_ascii=False, default=str)`` with
the characters that could drive a terminal (DEL, C1 controls, bidi overrides, line and paragraph separators)
escaped as ``\\uNNNN`` (:func:`decision_line`). :func:`ndjson_batches` writes the very same bytes from a
decision frame with polars string expressions, without a Python object per row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from engine.model import Decision, Message

if TYPE_CHECKING:
    import polars as pl

FIRED = "fired:"

# characters JSON leaves alone but a terminal would act on: escaped as \uNNNN in every NDJSON line
_UNSAFE = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_RE = re.compile(f"[{_UNSAFE}]")
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escapes() -> dict[str, str]:
    """Every character escaped inside a JSON string (as ``json.dumps(ensure_ascii=False)`` does, plus
    the terminal-unsafe ones), with its escape."""
    out = {chr(c): f"\\u{c:04x}" for c in range(0x20)}
    out.update(_SHORT)
    for c in [*range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
              *range(0x2066, 0x206A)]:
        out[chr(c)] = f"\\u{c:04x}"
    return out


ESCAPES = _escapes()


def json_safe(text: str) -> str:
    """JSON text with DEL/C1 controls and bidi overrides as ``\\uNNNN`` (JSON escapes the C0 ones itself)."""
    return _UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_text(value: Any) -> str:
    """``value`` as one line of JSON: non-ASCII kept, unknown types as text, terminal-unsafe characters
    escaped."""
    return json_safe(json.dumps(value, ensure_ascii=False, default=str))


def decision_line(decision: Decision) -> str:
    """One decision as an NDJSON line (without the newline)."""
    return json_text(decision.as_dict())


def ruleset_order(message: Message, kinds: Iterable[str]) -> list[str]:
    """The message's ruleset names in the order the pipeline runs them (the ``fired:`` columns' order), given
    the registered rule kinds in pipeline order (``registry.kinds``)."""
    order = list(kinds)
    ranked = sorted(message.rulesets, key=lambda k: order.index(k) if k in order else len(order))
    return [message.rulesets[k].name for k in ranked]


def frame_of(decisions: Iterable[Decision], message: Message, kinds: Iterable[str]) -> pl.DataFrame:
    """The decision frame of Decision objects (see the module docstring); ``kinds``: ``registry.kinds``."""
    import polars as pl

    names = ruleset_order(message, kinds)
    cols: dict[str, list[Any]] = {k: [] for k in (
        "customer", "included", "excluded_reason", "variant", "channel", "fallbacks", "incentive", "rendered",
        "send_at", "trace", *(FIRED + n for n in names))}
    for d in decisions:
        cols["customer"].append(d.customer)
        cols["included"].append(d.included)
        cols["excluded_reason"].append(d.excluded_reason)
        cols["variant"].append(d.variant)
        cols["channel"].append(d.channel)
        cols["fallbacks"].append(list(d.fallbacks))
        cols["incentive"].append(None if d.incentive is None else json_text(dict(d.incentive)))
        cols["rendered"].append(None if d.rendered is None else json_text(dict(d.rendered)))
        cols["send_at"].append(d.send_at)
        cols["trace"].append(json_text([t.as_dict() for t in d.trace]))
        for n in names:
            fired = d.fired.get(n)
            cols[FIRED + n].append(None if fired is None else list(fired))
    return pl.DataFrame(cols, schema=frame_schema(names))


def frame_schema(names: Iterable[str]) -> dict[str, Any]:
    """The decision frame's column types, with one ``fired:<name>`` column per ruleset name."""
    import polars as pl

    text = pl.String
    return {"customer": text, "included": pl.Boolean, "excluded_reason": text, "variant": text, "channel": text,
            "fallbacks": pl.List(text), "incentive": text, "rendered": text, "send_at": pl.Datetime("us", "UTC"),
            "trace": text, **{FIRED + n: pl.List(text) for n in names}}


def _string(expr: pl.Expr) -> pl.Expr:
    """A JSON string literal of a String expression (null stays null), escaped as :data:`ESCAPES` says."""
    import polars as pl

    keys = list(ESCAPES)
    return pl.concat_str(pl.lit('"'), expr.str.replace_many(keys, [ESCAPES[k] for k in keys]), pl.lit('"'))


def _string_list(expr: pl.Expr) -> pl.Expr:
    """A JSON array of strings from a List(String) expression (``[]`` for an empty list; null stays null)."""
    import polars as pl

    inner = expr.list.eval(_string(pl.element())).list.join(", ")
    return pl.concat_str(pl.lit("["), inner, pl.lit("]"))


def _or_null(expr: pl.Expr) -> pl.Expr:
    return expr.fill_null("null")


def _iso(expr: pl.Expr) -> pl.Expr:
    """Python's ``isoformat()`` of a UTC datetime, quoted (microseconds only when not zero)."""
    import polars as pl

    whole = expr.dt.strftime('"%Y-%m-%dT%H:%M:%S+00:00"')
    fine = expr.dt.strftime('"%Y-%m-%dT%H:%M:%S%.6f+00:00"')
    return pl.when(expr.dt.microsecond() == 0).then(whole).otherwise(fine)


def line_expr(frame_columns: Iterable[str], rules_versions: Mapping[str, str]) -> pl.Expr:
    """The NDJSON line of each row of a decision frame (see :func:`decision_line`: the same text)."""
    import polars as pl

    fired_names = [c[len(FIRED):] for c in frame_columns if c.startswith(FIRED)]
    fired_parts = [pl.when(pl.col(FIRED + n).is_not_null())
                   .then(pl.concat_str(pl.lit(json_text(n) + ": "), _string_list(pl.col(FIRED + n))))
                   for n in fired_names]
    fired = pl.concat_str(fired_parts, separator=", ", ignore_nulls=True) if fired_parts else pl.lit("")
    parts = [
        pl.lit('{"customer": '), _or_null(_string(pl.col("customer"))),
        pl.lit(', "included": '), pl.when(pl.col("included")).then(pl.lit("true")).otherwise(pl.lit("false")),
        pl.lit(', "excluded_reason": '), _or_null(_string(pl.col("excluded_reason"))),
        pl.lit(', "variant": '), _or_null(_string(pl.col("variant"))),
        pl.lit(', "channel": '), _or_null(_string(pl.col("channel"))),
        pl.lit(', "fallbacks": '), _or_null(_string_list(pl.col("fallbacks"))),
        pl.lit(', "incentive": '), _or_null(pl.col("incentive")),
        pl.lit(', "rendered": '), _or_null(pl.col("rendered")),
        pl.lit(', "send_at": '), _or_null(_iso(pl.col("send_at"))),
        pl.lit(', "rules_versions": ' + json_text(dict(rules_versions))),
        pl.lit(', "fired": {'), fired,
        pl.lit('}, "trace": '), _or_null(pl.col("trace")), pl.lit("}"),
    ]
    return pl.concat_str(parts)


def ndjson_batches(frame: pl.DataFrame, rules_versions: Mapping[str, str], *, batch: int = 100_000) -> Iterator[str]:
    """The NDJSON text of a decision frame, ``batch`` lines at a time (each batch ends with a newline)."""
    line = line_expr(frame.columns, rules_versions).str.join("\n")
    for start in range(0, frame.height, batch):
        text = frame.slice(start, batch).select(line).item()
        yield text + "\n"
