"""Phone numbers in international form checked over whole columns, with phonenumbers' own metadata.

:func:`classify_international` gives, for every value of a String series, what ``phonenumbers.parse(v)``
followed by ``is_valid_number`` and ``number_type`` would answer — computed as polars expressions built
from ``phonenumbers.PhoneMetadata`` (country calling codes, the regions sharing one, each region's leading
digits, possible national-number lengths and the national-number patterns of every number type), not by
calling the parser. It decides the values written ``+<digits>``, optionally with spaces, dashes, dots and
parentheses between the digits (what ``parse`` strips before reading them); every other value, and the
rare number whose digits after the country code start with that country's national prefix (``+44 0…``:
``parse`` may strip it), is left undecided for the caller to parse, once per distinct value.

The logic mirrors ``phonenumberutil``: the country code is the shortest 1–3 digit prefix that is a known
calling code; the region is the only one of that code, else the first whose ``leading_digits`` match the
start of the national number (or, without leading digits, for which the number has a type); the type is
``_number_type_helper``'s (premium rate, toll free, shared cost, VoIP, personal, pager, UAN, voicemail, then
fixed line / mobile), each pattern a full match (``^(?:…)$``) and each type restricted to its possible
lengths. ``tests/columnar/test_phones.py`` checks every verdict against phonenumbers over a generated
corpus of numbers from every region and type, with mutations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

from engine.lazy import lazy

if TYPE_CHECKING:
    import polars as pl
else:  # imported when a frame is first used
    pl = lazy("polars")

#: number type codes (``PhoneNumberType`` values); ``UNKNOWN`` means "not a valid number"
UNKNOWN = PhoneNumberType.UNKNOWN
#: the code of a value ``phonenumbers.parse`` refuses (no known country code, too short or too long): invalid
NOT_PARSED = -1
#: the types an SMS cannot reach (landlines, toll-free, premium, shared-cost, voicemail, UAN)
NOT_SMS = (PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE,
           PhoneNumberType.SHARED_COST, PhoneNumberType.VOICEMAIL, PhoneNumberType.UAN)
#: type code → the lower-case name the readers record in ``handle_type.<attribute>``
TYPE_NAMES = {int(v): k.lower() for k, v in vars(PhoneNumberType).items() if k.isupper() and isinstance(v, int)
              and v != UNKNOWN}
#: every line type name (a channel taking any valid number accepts these)
PHONE_TYPE_NAMES = tuple(TYPE_NAMES.values())
#: the line type names an SMS can reach
SMS_TYPE_NAMES = tuple(n for c, n in TYPE_NAMES.items() if c not in NOT_SMS)
#: a value the fast path reads: ``+`` and a digit, then digits and the separators parse strips
INTERNATIONAL_FORM = r"^\+[0-9][0-9 ().\-]*$"
_MAX_INPUT = 250  # phonenumbers refuses longer input
_NSN_LENGTHS = (2, 17)  # phonenumbers' bounds on a national significant number
_ORDERED = (("premium_rate", PhoneNumberType.PREMIUM_RATE), ("toll_free", PhoneNumberType.TOLL_FREE),
            ("shared_cost", PhoneNumberType.SHARED_COST), ("voip", PhoneNumberType.VOIP),
            ("personal_number", PhoneNumberType.PERSONAL_NUMBER), ("pager", PhoneNumberType.PAGER),
            ("uan", PhoneNumberType.UAN), ("voicemail", PhoneNumberType.VOICEMAIL))


@dataclass(frozen=True)
class _Region:
    """One region's metadata, as the pieces the type and region choice need."""

    code: str
    leading: str | None
    meta: PhoneMetadata


def _metadata(cc: int, region: str) -> PhoneMetadata | None:
    return PhoneMetadata.metadata_for_region_or_calling_code(cc, region)


@cache
def _calling_codes() -> dict[str, tuple[_Region, ...]]:
    """Calling code (as text) → its regions with metadata, in phonenumbers' order."""
    out = {}
    for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        metas = [(r, _metadata(cc, r)) for r in regions]
        out[str(cc)] = tuple(_Region(r, m.leading_digits, m) for r, m in metas if m is not None)
    return out


def _full(pattern: str) -> str:
    """A phonenumbers pattern as a Rust regex anchored at both ends (``fullmatch``); ASCII mode, since the
    values are ASCII digits (``\\d`` then means ``[0-9]``, several times faster than Unicode digits)."""
    return f"(?-u)^(?:{pattern})$"


def _desc_match(n: pl.Expr, desc) -> pl.Expr | None:
    """``_is_number_matching_desc``: within the possible lengths (if any) and a full pattern match."""
    if desc is None or not desc.national_number_pattern:
        return None
    cond = n.str.contains(_full(desc.national_number_pattern))
    if desc.possible_length:
        cond = n.str.len_bytes().is_in(list(desc.possible_length)) & cond
    return cond


def _code(kind: int) -> pl.Expr:
    return pl.lit(int(kind), pl.Int8)


def _chain(n: pl.Expr, meta: PhoneMetadata, special: bool) -> pl.Expr:
    """The type of numbers already known to match the general description; ``special``: also test the
    premium-rate … voicemail descriptions (first), else only fixed line and mobile."""
    chain = None
    for attr, kind in _ORDERED if special else ():
        cond = _desc_match(n, getattr(meta, attr))
        if cond is not None:
            chain = pl.when(cond).then(_code(kind)) if chain is None else chain.when(cond).then(_code(kind))
    fixed, mobile = _desc_match(n, meta.fixed_line), _desc_match(n, meta.mobile)
    same = bool(meta.same_mobile_and_fixed_line_pattern)
    steps = []
    if fixed is not None:
        both = pl.lit(True) if same else (mobile if mobile is not None else pl.lit(False))
        steps += [(fixed & both, PhoneNumberType.FIXED_LINE_OR_MOBILE), (fixed, PhoneNumberType.FIXED_LINE)]
    if not same and mobile is not None:
        steps.append((mobile, PhoneNumberType.MOBILE))
    for cond, kind in steps:
        chain = pl.when(cond).then(_code(kind)) if chain is None else chain.when(cond).then(_code(kind))
    return _code(UNKNOWN) if chain is None else chain.otherwise(_code(UNKNOWN))


def _typed(rows: pl.DataFrame, meta: PhoneMetadata) -> pl.DataFrame:
    """``rows`` with ``type`` = ``_number_type_helper(n, meta)``, in another order. Numbers outside the
    general description are UNKNOWN; the rare ones matching some premium … voicemail pattern take the full
    order, the rest only fixed line / mobile (one combined regex decides which)."""
    general = _desc_match(pl.col("n"), meta.general_desc)
    if general is None:
        return rows.with_columns(_code(UNKNOWN).alias("type"))
    mask = rows.select(general.fill_null(False)).to_series()
    out = [rows.filter(~mask).with_columns(_code(UNKNOWN).alias("type"))]
    rows = rows.filter(mask)
    specials = [d.national_number_pattern for a, _ in _ORDERED if (d := getattr(meta, a)) is not None
                and d.national_number_pattern]
    if specials:
        some = rows.get_column("n").str.contains(_full("|".join(f"(?:{p})" for p in specials)))
        out.append(rows.filter(some).with_columns(_chain(pl.col("n"), meta, True).alias("type")))
        rows = rows.filter(~some)
    out.append(rows.with_columns(_chain(pl.col("n"), meta, False).alias("type")))
    return pl.concat(out)


def type_expr(n: pl.Expr, meta: PhoneMetadata) -> pl.Expr:
    """``_number_type_helper(n, meta)`` as an Int8 expression over national significant numbers ``n``."""
    general = _desc_match(n, meta.general_desc)
    if general is None:
        return _code(UNKNOWN)
    return pl.when(~general).then(_code(UNKNOWN)).otherwise(_chain(n, meta, True))


def _types_for_code(nsn: pl.DataFrame, regions: tuple[_Region, ...]) -> pl.DataFrame:
    """The rows of one calling code (``n`` = national number) with ``type``, in another order:
    ``region_code_for_number`` then that region's type; rows no region claims are ``UNKNOWN``."""
    if len(regions) == 1:
        return _typed(nsn, regions[0].meta)
    parts, rest = [], nsn
    for region in regions:
        if rest.height == 0:
            break
        if region.leading is not None:
            mine = rest.get_column("n").str.contains(f"(?-u)^(?:{region.leading})")
            parts.append(_typed(rest.filter(mine), region.meta))
            rest = rest.filter(~mine)
        else:
            typed = _typed(rest, region.meta)
            hit = typed.get_column("type") != int(UNKNOWN)
            parts.append(typed.filter(hit))
            rest = typed.filter(~hit).drop("type")
    parts.append(rest.with_columns(_code(UNKNOWN).alias("type")))
    return pl.concat(parts)


@cache
def _code_table() -> tuple[list[str], list[str]]:
    """Every 3-digit start → the calling code it begins with (calling codes are a prefix code)."""
    codes = set(_calling_codes())
    keys, values = [], []
    for i in range(1000):
        head = f"{i:03d}"
        cc = next((head[:w] for w in (1, 2, 3) if head[:w] in codes and head[0] != "0"), None)
        if cc is not None:
            keys.append(head)
            values.append(cc)
    return keys, values


def _strippable(n: pl.Expr, cc: str) -> pl.Expr | None:
    """True where ``parse`` could strip a national prefix from a national number ``n`` of ``cc`` (its main
    region's ``national_prefix_for_parsing`` matches a non-empty start); None when it never can."""
    regions = _calling_codes()[cc]
    npp = regions[0].meta.national_prefix_for_parsing if regions else None
    if not npp:
        return None
    if re.match(npp, ""):  # the prefix may be empty: only a non-empty match counts
        return (n.str.extract(f"(?-u)^({npp})", 1).str.len_bytes() > 0).fill_null(False)
    return n.str.contains(f"(?-u)^(?:{npp})")


#: a value in national form the fast path may read: digits (an opening parenthesis first) and separators
NATIONAL_FORM = r"^[(]?[0-9][0-9 ().\-]*$"


def _possible_after_strip(n: pl.Expr, meta: PhoneMetadata) -> pl.Expr:
    """``_test_number_length(n, meta)`` is IS_POSSIBLE or TOO_LONG: when ``parse`` keeps a stripped prefix."""
    general = meta.general_desc
    if general is None:  # no number of the region is possible
        return pl.lit(False)
    lengths = sorted(general.possible_length)
    local = list(general.possible_length_local_only or ())
    size = n.str.len_bytes()
    return ~size.is_in(local) & (size.is_in(lengths) | (size > lengths[-1]))


def _too_long(n: pl.Expr, meta: PhoneMetadata) -> pl.Expr:
    """``_test_number_length(n, meta) == TOO_LONG`` (the general description's lengths)."""
    general = meta.general_desc
    if general is None or not general.possible_length:
        return pl.lit(False)
    lengths = sorted(general.possible_length)
    if lengths[0] == -1:  # INVALID_LENGTH for every number
        return pl.lit(False)
    local = list(general.possible_length_local_only or ())
    size = n.str.len_bytes()
    return ~size.is_in(local) & (size != lengths[0]) & (size > lengths[-1])


def international_from_national(values: pl.Series, region: str) -> pl.Series:
    """Each value in ``region``'s national form rewritten as ``+<country code><national number>`` where that
    is exactly what ``phonenumbers.parse(value, region)`` reads (the national prefix stripped under parse's
    own conditions); every other value unchanged (values starting with the international prefix or the
    country code, or whose prefix parse might keep, stay as they are: the caller parses them). Digits starting
with the country code (no ``+``) become ``+<digits>`` where parse reads them so (see below)."""
    meta = PhoneMetadata.metadata_for_region(region.upper(), None)
    if meta is None or meta.general_desc is None or meta.national_prefix_transform_rule \
            or not meta.general_desc.possible_length:
        return values
    npp = meta.national_prefix_for_parsing or ""
    if npp and not npp.isdigit():  # only a literal national prefix ("0", "1"): regex prefixes are parsed
        return values
    cc = str(meta.country_code)
    text = values.cast(pl.String)
    candidate = (text.str.contains(NATIONAL_FORM) & (text.str.len_bytes() <= _MAX_INPUT)).fill_null(False)
    if not candidate.any():
        return text
    rows = candidate.arg_true()
    d = pl.col("v").str.replace_all(r"[^0-9]", "")
    sub = pl.DataFrame({"v": text.gather(rows)}).with_columns(d.alias("d"))
    d = pl.col("d")
    national = d.str.len_bytes() >= 3  # fewer digits with separators: parse finds no number (NOT_A_NUMBER)
    if meta.international_prefix:
        national = national & ~d.str.contains(f"(?-u)^(?:{meta.international_prefix})")
    general = f"(?-u)^(?:{meta.general_desc.national_number_pattern})$"
    # the country code without "+": parse reads the digits after it as the national number when the whole
    # was not viable and they are, or the whole is too long (``_maybe_extract_country_code``); only digits
    # after it that do not start with the national prefix are decided here (parse would strip it twice)
    with_cc = national & d.str.starts_with(cc)
    after = d.str.slice(len(cc))
    too_long = _too_long(d, meta)
    swaps = (with_cc & ~(after.str.starts_with(npp) if npp else pl.lit(False))
             & ((~d.str.contains(general) & after.str.contains(general)) | too_long))
    national = national & ~d.str.starts_with(cc)
    rest = d.str.slice(len(npp))
    with_prefix = d.str.starts_with(npp) if npp else pl.lit(False)
    # parse strips the prefix unless the whole number was viable and the rest is not, or the rest's length
    # is not possible; then it keeps the prefix (a number the caller parses)
    keeps = (d.str.contains(general) & ~rest.str.contains(general)) | ~_possible_after_strip(rest, meta)
    nsn = pl.when(with_prefix & ~keeps).then(rest).when(~with_prefix).then(d)
    out = sub.select(pl.when(swaps.fill_null(False)).then(pl.concat_str([pl.lit("+"), d]))
                     .when(national.fill_null(False) & nsn.is_not_null())
                     .then(pl.concat_str([pl.lit("+" + cc), nsn])).otherwise(pl.col("v")).alias("v")).to_series()
    return text.scatter(rows, out).alias(values.name)


def classify_international(values: pl.Series, region: str | None = None) -> pl.DataFrame:
    """Per value: ``e164`` (``+`` and the digits, String) and ``type`` (Int8, a ``PhoneNumberType`` code,
    ``UNKNOWN`` = parsed but invalid, ``NOT_PARSED`` = parse refuses it) where the fast path decides it; both
    null where the value must be parsed.

    A decided value has ``phonenumbers.is_valid_number(parse(v)) == (type >= 0 and type != UNKNOWN)``, the same
    ``number_type``, and ``format_number(parse(v), E164) == e164`` when valid. With ``region``, values in
    that region's national form are read as ``parse(v, region)`` reads them
    (:func:`international_from_national`)."""
    text = values.cast(pl.String)
    if region is not None:
        text = international_from_national(text, region)
    frame = pl.DataFrame({"v": text}).with_row_index("_row")
    pure_mask = frame.get_column("v").str.contains(r"(?-u)^\+[0-9]+$").fill_null(False)
    pure, other = frame.filter(pure_mask), frame.filter(~pure_mask)
    form = other.get_column("v").str.contains(INTERNATIONAL_FORM) & (other.get_column("v").str.len_bytes() <= _MAX_INPUT)
    form = form.fill_null(False)
    parts = [other.filter(~form).select("_row", pl.lit(None, pl.String).alias("d"), pl.lit(None, pl.Int8).alias("type"))]
    cand = pl.concat([pure.select("_row", pl.col("v").str.slice(1).alias("d")),
                      other.filter(form).select("_row", pl.col("v").str.replace_all(r"[^0-9]", "").alias("d"))])
    keys, ccs = _code_table()
    cc = pl.col("d").str.head(3).replace_strict(keys, ccs, default=None, return_dtype=pl.String)
    cand = cand.with_columns(cc.alias("cc")).with_columns(pl.col("d").str.slice(pl.col("cc").str.len_bytes()).alias("n"))
    lo, hi = _NSN_LENGTHS
    # no known calling code (short, or starting with 0), or a national number too short: parse refuses it
    bad = cand.select(pl.col("cc").is_null() | (pl.col("n").str.len_bytes() < lo)).to_series()
    parts.append(cand.filter(bad).select("_row", "d", _code(NOT_PARSED).alias("type")))
    for (code,), part in cand.filter(~bad).partition_by("cc", as_dict=True).items():
        strip = _strippable(pl.col("n"), code)
        if strip is not None:  # parse may strip a national prefix from these: left to phonenumbers
            mask = part.select(strip).to_series()
            parts.append(part.filter(mask).select("_row", "d", pl.lit(None, pl.Int8).alias("type")))
            part = part.filter(~mask)
        long = part.get_column("n").str.len_bytes() > hi  # too long to parse (nothing was stripped)
        parts.append(part.filter(long).select("_row", "d", _code(NOT_PARSED).alias("type")))
        part = part.filter(~long)
        parts.append(_types_for_code(part.select("_row", "d", "n"), _calling_codes()[code]).select("_row", "d", "type"))
    out = pl.concat(parts).sort("_row")
    return out.select(pl.when((pl.col("type") >= 0) & (pl.col("type") != int(UNKNOWN))).then(pl.concat_str([pl.lit("+"), pl.col("d")]))
                      .alias("e164"), pl.col("type"))


def type_name(e164: str) -> str:
    """The line type of a valid number in E.164 form, as recorded in ``handle_type.<attribute>``."""
    return TYPE_NAMES[int(phonenumbers.number_type(phonenumbers.parse(e164, None)))]
