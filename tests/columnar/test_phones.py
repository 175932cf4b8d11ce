"""The vectorised phone check (``engine.phones``) answers exactly as phonenumbers does, over a generated
corpus: the example number of every region and number type (and of every non-geographic calling code), in
E.164 and in international format with spaces, and mutations of each (a digit added, dropped or changed,
random tails, a national prefix after the country code), plus random digit strings after a ``+``."""

from __future__ import annotations

import random

import phonenumbers as pn
import polars as pl
import pytest
from phonenumbers import PhoneNumberType as T

from engine.audience import normalise_phone
from engine.columnar.contacts import normalise_phones
from engine.phones import NOT_PARSED, UNKNOWN, classify_international

_TYPES = [t for t in vars(T).values() if isinstance(t, int) and t != T.UNKNOWN]


def _examples() -> list[pn.PhoneNumber]:
    out = [ex for r in sorted(pn.SUPPORTED_REGIONS) for t in _TYPES if (ex := pn.example_number_for_type(r, t))]
    out += [ex for cc in sorted(pn.COUNTRY_CODES_FOR_NON_GEO_REGIONS) if (ex := pn.example_number_for_non_geo_entity(cc))]
    return out


def corpus(seed: int = 8) -> list[str]:
    """Examples of every region and type, in two formats, with six mutations each, and random numbers."""
    rng = random.Random(seed)
    out = []
    for number in _examples():
        e164 = pn.format_number(number, pn.PhoneNumberFormat.E164)
        out += [e164, pn.format_number(number, pn.PhoneNumberFormat.INTERNATIONAL)]
        digits, cc = e164[1:], str(number.country_code)
        for _ in range(6):
            k = rng.randrange(len(digits))
            kind = rng.choice(["add", "drop", "change", "random", "prefix", "dashes"])
            if kind == "add":
                x = digits[:k] + rng.choice("0123456789") + digits[k:]
            elif kind == "drop":
                x = digits[:k] + digits[k + 1:]
            elif kind == "change":
                x = digits[:k] + rng.choice("0123456789") + digits[k + 1:]
            elif kind == "random":
                x = digits[:k] + "".join(rng.choice("0123456789") for _ in range(len(digits) - k))
            elif kind == "prefix":
                x = cc + rng.choice(["0", "1", "8", "90", "015"]) + digits[len(cc):]
            else:
                x = digits[:k] + "-" + digits[k:]
            out.append("+" + x)
    out += ["+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 19))) for _ in range(3000)]
    out += ["", "+", "++44 20 7946 0958", "+44 (0) 20 7946 0958", " +447400123456", "+44.7400.123456",
            "+44 7400 123456 ext. 12", "+1 (201) 555-0123", "4474001234567", "+447400123456\n", "+٤٤٧٤٠٠١٢٣٤٥٦"]
    return out


def parses(value: str, region: str | None = None) -> bool:
    try:
        pn.parse(value, region)
    except pn.NumberParseException:
        return False
    return True


def truth(value: str, region: str | None = None) -> tuple[str | None, int]:
    """(E.164 when valid, number type) as phonenumbers answers; (None, UNKNOWN) when it cannot parse."""
    try:
        number = pn.parse(value, region)
    except pn.NumberParseException:
        return None, T.UNKNOWN
    if not pn.is_valid_number(number):
        return None, T.UNKNOWN
    return pn.format_number(number, pn.PhoneNumberFormat.E164), pn.number_type(number)


def test_every_decided_verdict_is_phonenumbers_verdict():
    values = corpus()
    got = classify_international(pl.Series(values, dtype=pl.String))
    wrong, decided = [], 0
    for value, e164, kind in zip(values, got["e164"], got["type"], strict=True):
        if kind is None:
            continue
        decided += 1
        want = truth(value)
        if (e164, kind) != (want[0], want[1]) and not (kind in (UNKNOWN, NOT_PARSED) and want[1] == T.UNKNOWN):
            wrong.append((value, e164, kind, want))
    assert not wrong, wrong[:20]
    assert decided > 0.9 * len(values)  # the fast path decides nearly all: only national prefixes are left


def test_the_fast_path_decides_e164_numbers_of_every_region():
    e164 = [pn.format_number(n, pn.PhoneNumberFormat.E164) for n in _examples()]
    got = classify_international(pl.Series(e164))
    undecided = [v for v, k in zip(e164, got["type"], strict=True) if k is None]
    assert len(undecided) < 0.03 * len(e164), undecided  # national numbers starting like a national prefix
    assert all(e == v for v, e in zip(e164, got["e164"], strict=True) if e is not None)


def test_invalid_verdicts_say_whether_parse_accepts_the_number():
    values = corpus(seed=4)
    got = classify_international(pl.Series(values, dtype=pl.String))
    wrong = [(v, k) for v, k in zip(values, got["type"], strict=True)
             if k in (UNKNOWN, NOT_PARSED) and (k == UNKNOWN) != parses(v)]
    assert not wrong, wrong[:20]


@pytest.mark.parametrize("region", [None, "GB", "IN", "US", "DE"])
def test_column_normalisation_equals_the_per_value_normaliser(region):
    values = corpus(seed=3)[::3] + national_corpus(region or "FR")[::4] + [
        "07400 123456", "020 7946 0958", "098123 45678", "7400123456", "1-2", "12", "1 2 3", None]
    good, bad = normalise_phones(pl.Series(values, dtype=pl.String), region=region)
    for value, g, b in zip(values, good, bad, strict=True):
        if value is None:
            assert (g, b) == (None, None)
            continue
        try:
            want = (normalise_phone(value, region=region), None)
        except ValueError as exc:
            want = (None, str(exc))
        assert (g, b) == want, value


REGIONS = ["IN", "US", "GB", "DE", "FR", "BR", "ID", "AR", "MX", "IT", "RU", "CN", "JP", "AU", "NG", "ZA", "KR",
           "CA", "SG", "AE", "TR", "PL", "NL", "SE", "CH", "HU", "BY", "KZ"]


def national_corpus(region: str, seed: int = 5) -> list[str]:
    """Numbers of every region written in ``region``'s national form (and mutations): what a CRM holds when
    numbers are stored without ``+``."""
    rng = random.Random(f"{region}{seed}")
    out = []
    for number in _examples():
        text = pn.format_number(number, pn.PhoneNumberFormat.NATIONAL)
        digits = "".join(c for c in text if c.isdigit())
        out += [text, digits, "(" + digits[:3] + ") " + digits[3:]]
        for _ in range(3):
            k = rng.randrange(len(digits) + 1)
            out.append(digits[:k] + rng.choice(["", "0", "1", "9", "00"]) + digits[k + 1:])
    out += ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16))) for _ in range(500)]
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_national_forms_are_read_as_parse_reads_them_in_the_region(region):
    values = national_corpus(region)
    got = classify_international(pl.Series(values, dtype=pl.String), region)
    wrong = []
    for value, e164, kind in zip(values, got["e164"], got["type"], strict=True):
        if kind is None:
            continue
        want = truth(value, region)
        if (e164, kind) != want and not (kind in (UNKNOWN, NOT_PARSED) and want[1] == T.UNKNOWN):
            wrong.append((value, e164, kind, want))
    assert not wrong, wrong[:20]


def test_the_national_form_of_a_literal_prefix_region_is_decided_as_columns():
    got = classify_international(pl.Series(["098123 45678", "9812345678", "(0) 98123-45678", "0098123"]), "IN")
    assert got["e164"].to_list()[:3] == ["+919812345678"] * 3
    assert got["type"].to_list()[3] is None  # the international prefix 00: left to phonenumbers


def country_code_corpus(region: str, seed: int = 7) -> list[str]:
    """Numbers written as ``region``'s country code and digits without ``+`` (``919812345678`` for IN), and
    mutations: a national prefix after the code, a digit added or dropped, random tails."""
    rng = random.Random(f"cc{region}{seed}")
    cc = str(pn.country_code_for_region(region))
    out = []
    for number in _examples():
        nsn = pn.national_significant_number(number)
        out += [cc + nsn, cc + " " + nsn, cc + "0" + nsn, cc + nsn[:-1], cc + nsn + rng.choice("0123456789"),
                cc + cc + nsn]
    out += [cc + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16))) for _ in range(800)]
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_digits_with_the_country_code_and_no_plus_are_read_as_parse_reads_them(region):
    values = country_code_corpus(region)
    got = classify_international(pl.Series(values, dtype=pl.String), region)
    wrong = []
    for value, e164, kind in zip(values, got["e164"], got["type"], strict=True):
        if kind is None:
            continue
        want = truth(value, region)
        if (e164, kind) != want and not (kind in (UNKNOWN, NOT_PARSED) and want[1] == T.UNKNOWN):
            wrong.append((value, e164, kind, want))
    assert not wrong, wrong[:20]


def test_indian_numbers_with_the_country_code_and_no_plus_are_decided_as_columns():
    got = classify_international(pl.Series(["919812345678", "91 98123 45678", "9109812345678"]), "IN")
    assert got["e164"].to_list()[:2] == ["+919812345678"] * 2
    assert got["type"].to_list()[2] is None  # a national prefix after the code: left to phonenumbers
