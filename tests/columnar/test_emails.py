"""The vectorised e-mail check (``engine.columnar.contacts.normalise_emails``) gives email-validator's verdict,
normalised address and our message for every address of a corpus: plain and internationalized local parts
(several scripts, combining marks, emoji, not-NFC forms), quoted local parts, dots at the edges and doubled,
spaces, several @, long local parts and labels, IP literals, IDN and upper-case domains, and random text."""

from __future__ import annotations

import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audience import normalise_email
from engine.columnar.contacts import email_verdicts, normalise_emails

LOCALS = ["asha", "Asha.Patel", "a+tag", "first_last", "a-b", "x", "a.b.c", ".asha", "asha.", "as..ha", "\"asha\"",
          "\"as ha\"", "\"a@b\"", "as ha", "as\tha", "jürgen", "JÜRGEN.müller", "jose\u0301", "josé", "用户", "пользователь",
          "उपयोगकर्ता", "ユーザー", "ü" * 64, "ü" * 33, "a" * 64, "a" * 65, "😀", "a!b", "a#b", "a$b", "a%b", "a&b", "a'b",
          "a*b", "a/b", "a=b", "a?b", "a^b", "a`b", "a{b}", "a|b", "a~b", "a(b)", "a,b", "a:b", "a;b", "a<b>", "a[b]",
          "a\\b", "", " asha", "asha ", "١٢٣", "ǅemal", "\u00aa", "a\u200bb", "ﬁle"]
DOMAINS = ["example.com", "EXAMPLE.COM", "mail.co.uk", "gmail.com", "localhost", "com", "x.test", "a..b", "-bad.com",
           "bad-.com", "[1.2.3.4]", "[IPv6:::1]", "1.2.3.4", "bücher.de", "xn--bcher-kva.ch", "BÜCHER.DE",
           "a" * 63 + ".com", "a" * 64 + ".com", ".".join(["abcdefghij"] * 25) + ".com", "exa mple.com", "example.com.",
           "example", "ex_ample.com", "例え.jp", "example.invalid", "example.local", "ex@mple.com", ""]


def corpus(seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    out = [f"{local}@{domain}" for local in LOCALS for domain in DOMAINS[:6]]
    out += [f"{rng.choice(LOCALS)}@{domain}" for domain in DOMAINS for _ in range(4)]
    out += ["asha", "asha@", "@example.com", "a@@example.com", "a@b@example.com", "a@b@c", "\"a@b\"@c@example.com",
            "@@example.com", "a@example.com@", "x<a@b.com>", "\"a@b\"@example.com", " asha@example.com",
            "asha@example.com ", "asha@example.com\n", "ASHA@EXAMPLE.COM", "a" * 250 + "@example.com", "asha@ example.com"]
    return out


def _want(text: str) -> tuple[str | None, str | None]:
    try:
        return normalise_email(text), None
    except ValueError as exc:
        return None, str(exc)


def test_every_verdict_and_message_is_email_validators():
    values = corpus()
    good, bad = normalise_emails(pl.Series("e", values, dtype=pl.String))
    wrong = [(v, g, b, _want(v)) for v, g, b in zip(values, good, bad, strict=True) if (g, b) != _want(v)]
    assert not wrong, wrong[:10]
    verdicts = email_verdicts(pl.Series("e", [*values, None], dtype=pl.String)).to_list()
    assert verdicts == [_want(v)[0] is not None for v in values] + [False]


def test_the_common_shapes_need_no_per_value_validation(monkeypatch):
    import engine.columnar.contacts as contacts

    asked = []
    real = contacts.normalise_email
    monkeypatch.setattr(contacts, "normalise_email", lambda v: asked.append(v) or real(v))
    contacts._cache.clear()
    values = ["asha.patel7@example.com", "Jürgen.Müller@Web.DE", "asha..patel@example.com", "no-at-sign",
              "two words@example.com", "asha@localhost", "asha@@example.com", "a@b@example.com"] * 3
    good, bad = normalise_emails(pl.Series("e", values, dtype=pl.String))
    assert good.to_list()[:2] == ["asha.patel7@example.com", "Jürgen.Müller@web.de"]
    assert bad.null_count() == 6
    assert all(v.startswith("a@") for v in asked)  # only distinct domains were validated, one address each


LOCAL = st.text(alphabet="abcXYZ019._+-\"!é ü用\u0301 ", min_size=1, max_size=12)
DOMAIN = st.sampled_from(DOMAINS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(lambda a, b: f"{a}@{b}", LOCAL, DOMAIN) | st.text(max_size=10), min_size=1, max_size=10))
def test_generated_addresses(addresses):
    good, bad = normalise_emails(pl.Series("e", addresses, dtype=pl.String))
    for text, g, b in zip(addresses, good.to_list(), bad.to_list(), strict=True):
        assert (g, b) == _want(text), text


@pytest.mark.parametrize("text", ["a@b.co", "ab@example.com"])
def test_single_values(text):
    good, bad = normalise_emails(pl.Series("e", [text], dtype=pl.String))
    assert (good[0], bad[0]) == _want(text)
