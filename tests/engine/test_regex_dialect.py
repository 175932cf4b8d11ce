"""``matches`` has one dialect (RE2), runs in linear time, and means the same on every evaluator."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import RuleFileError
from engine.evaluators import get_evaluator
from engine.evaluators.columnar import ColumnarEvaluator
from engine.rulefiles import load_ruleset_data
from engine.rulefiles.ir import Always, Cmp, Rule, Ruleset
from engine.rulefiles.regex import RegexError, check, fullmatch, to_polars

RULE = """\
ruleset: rx
kind: personalization
hit_policy: first
rules:
  - id: hit
    priority: 1
    when: {{field: customer.first_name, matches: '{pattern}'}}
    then: {{variant: hit}}
"""


def load_problem(pattern: str, catalogue, kinds) -> str:
    with pytest.raises(RuleFileError) as info:
        load_ruleset_data(RULE.format(pattern=pattern), catalogue, kinds=kinds, source="r.yaml")
    (problem,) = info.value.problems
    return str(problem)


@pytest.mark.parametrize(("pattern", "why"), [
    (r"(a)\1", "backreferences are not supported"),
    (r"(?=a)a", "lookahead (?=…) is not supported"),
    (r"(?!a)b", "lookahead (?!…) is not supported"),
    (r"(?<=a)b", "lookbehind (?<=…) is not supported"),
    (r"(?<!a)b", "lookbehind (?<!…) is not supported"),
    (r"\C", "\\C (one byte) is not supported"),
    (r"\Qa.b\E", "\\Q…\\E quoting is not supported"),
    (r"\101", "octal escape"),
    (r"a{1001}", "invalid repetition size"),
])
def test_constructs_re2_cannot_run_are_load_errors_with_line_and_column(catalogue, kinds, pattern, why):
    msg = load_problem(pattern, catalogue, kinds)
    assert msg.startswith("r.yaml:7:40: hit:when:"), msg
    assert "invalid regular expression" in msg and why in msg


def test_catastrophic_backtracking_pattern_returns_on_every_evaluator():
    # (a+)+$ on 'a'*50+'b' takes ~2**50 steps in a backtracking engine: this test would hang, not fail
    rs = Ruleset("rx", "personalization", "first",
                 (Rule("hit", 1, Cmp("customer.first_name", "matches", "(a+)+$"), {"variant": "x"}),
                  Rule("bulk", 2, Cmp("customer.first_name", "matches", "(x+x+)+y"), {"variant": "y"})),
                 "catastrophic")
    facts = {"customer.first_name": "a" * 50 + "b"}
    for name in ("reference", "compiled", "durable", "columnar"):
        assert get_evaluator(name).fired(rs, facts) == (), name
    assert get_evaluator("compiled").fired(rs, {"customer.first_name": "a" * 50}) == ("hit",)
    assert get_evaluator("compiled").fired(rs, {"customer.first_name": "x" * 40 + "y"}) == ("bulk",)


def test_perl_classes_are_ascii_as_in_re2_on_every_evaluator():
    rs = Ruleset("rx", "personalization", "collect",
                 (Rule("digits", 1, Cmp("customer.first_name", "matches", r"\d+"), {"variant": "x"}),
                  Rule("word", 2, Cmp("customer.first_name", "matches", r"\w+"), {"variant": "x"}),
                  Rule("always", 3, Always(), {"variant": "x"})), "ascii")
    for name in ("reference", "compiled", "durable", "columnar"):
        ev = get_evaluator(name)
        assert ev.fired(rs, {"customer.first_name": "٣٤"}) == ("always",), name  # Arabic-Indic digits
        assert ev.fired(rs, {"customer.first_name": "34"}) == ("digits", "word", "always"), name
        assert ev.fired(rs, {"customer.first_name": "José"}) == ("always",), name


PATTERNS = [
    "", "a", "a|b", "a*", "(a|ab)(c|bcd)(d*)", r"\d+", r"\D", r"\w+", r"\W", r"\s", r"\S+", r"\bab\b", r"\Bb",
    r"(?i)\w", r"(?i)k", r"(?i)straße", "[]a]", "[^]a]", "[a-]", "[-a]", "[a&&b]", "[!--]", "[a~~b]", "[[a]",
    r"[\d-z]", r"[^\n]", r"\<a\>", r"\_", r"\-", r"\#", r"\%", r"\ ", "a{2}", "a{,3}", "a{2", "a]", "a}",
    r"\pL+", r"\PL", r"\pN", r"\p{Greek}", r"\p{^Greek}", r"[\pL\d]", r"[[:alpha:]]+", r"[[:^alpha:]]",
    "a.b", "(?s)a.b", "(?m)^a$", r"a\z", r"\Aab", r"\x41", r"\x{3b1}", r"\t", "(?U)a+", "(?P<x>a)b", "(?<x>a)b",
    "é?", "gold|silver", "[a-z]+", ".*@example\\.com",
]
TEXTS = [
    "", "a", "ab", "aa", "aaa", "{2}", "a{2", "a{,3}", "a]", "a}", "]", "-", "&", "~", "[", "<a>", "b", "٣", "3",
    "\u212a", "é", "ß", "STRASSE", "straße", " ", "\t", "\n", "a\nb", "axb", "ab ab", "_", "#", "A", "abcd", "α",
    "x", "%", "\v", "gold", "Gold", "x@example.com", "1_a",
]


def test_the_columnar_translation_agrees_with_re2_on_a_table_of_patterns_and_texts():
    frame = pl.Series(TEXTS, dtype=pl.String)
    for pattern in PATTERNS:
        check(pattern)
        want = [fullmatch(pattern)(t) for t in TEXTS]
        got = frame.str.contains(to_polars(pattern)).to_list()
        assert got == want, (pattern, [(t, w) for t, w, g in zip(TEXTS, want, got, strict=True) if w != g])


ATOMS = ["a", "b", "k", "é", "3", ".", r"\d", r"\w", r"\s", r"\W", r"\b", r"\-", r"\<", r"\{", "[a-c]", "[^a]",
         "[]a]", "[-a]", "[a&&b]", "[[a]", r"[\d_]", r"\pL", "{", "}", "^", "$", " ", "-", "&"]


@st.composite
def patterns(draw, depth: int = 0):
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["atom", "atom", "group", "alt", "star", "flag"] if depth < 2 else ["atom"]))
        if kind == "atom":
            parts.append(draw(st.sampled_from(ATOMS)))
        elif kind == "group":
            parts.append("(" + draw(patterns(depth + 1)) + ")")
        elif kind == "alt":
            parts.append(draw(patterns(depth + 1)) + "|" + draw(patterns(depth + 1)))
        elif kind == "star":
            parts.append("(?:" + draw(patterns(depth + 1)) + ")" + draw(st.sampled_from(["*", "+", "?", "{1,2}"])))
        else:
            parts.append(draw(st.sampled_from(["(?i)", "(?s)", "(?m)"])))
    return "".join(parts)


texts = st.text(alphabet=st.sampled_from(list("abk3é_-&<>{} \n\u212aAB[]")), max_size=6)


@settings(max_examples=300, deadline=None)
@given(patterns(), st.lists(texts, min_size=1, max_size=8))
def test_per_recipient_and_columnar_evaluators_agree_on_generated_patterns(pattern, values):
    try:
        check(pattern)
    except RegexError:
        return  # refused for every evaluator alike
    rs = Ruleset("rx", "personalization", "first",
                 (Rule("hit", 1, Cmp("customer.first_name", "matches", pattern), {"variant": "x"}),), "v1")
    frame = pl.DataFrame({"customer.first_name": pl.Series(values, dtype=pl.String)})
    columnar = ColumnarEvaluator().fired_frame(rs, frame)
    compiled = get_evaluator("compiled")
    assert columnar == [compiled.fired(rs, {"customer.first_name": v}) for v in values], pattern
