"""Phone and e-mail normalisation over whole columns, with the answers of ``engine.audience`` (phonenumbers
and email-validator are the source of truth).

Phone numbers in international form are decided by :mod:`engine.phones` (polars expressions from
phonenumbers' metadata); the rest go through phonenumbers once per distinct value. E-mail has a vectorised fast path: an address whose local part is a
plain dot-atom (letters, digits, ``._+-``, no leading, trailing or double dots, at most 64 characters) and
whose whole length is at most 254 is valid exactly when its domain is, and normalises to the same local
part and the normalised domain; so only distinct *domains* go through email-validator. Everything else
goes through email-validator per distinct value. ``tests/columnar`` checks the fast path against
email-validator with generated addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from engine.audience import email_error, normalise_email, normalise_phone, normalised_handle
from engine.contracts import ContactField
from engine.phones import TYPE_NAMES, UNKNOWN, classify_international, type_name

_LOCAL = r"^[A-Za-z0-9+_-]+(\.[A-Za-z0-9+_-]+)*$"
#: a plain address: an ASCII dot-atom local part, one @, a domain of printable ASCII
_PLAIN = r"^[A-Za-z0-9+_-]+(?:\.[A-Za-z0-9+_-]+)*@[\x21-\x3f\x41-\x7e]+$"
#: an internationalized dot-atom local part: letters and digits of any script (no marks, symbols, spaces)
_LOCAL_INTL = r"^[\p{L}\p{N}+_-]+(\.[\p{L}\p{N}+_-]+)*$"
_CACHE_MAX = 2_000_000
_cache: dict[tuple[str, str], tuple[str | None, str | None]] = {}


def _checked(kind: str, value: str, fn: Callable[[str], str]) -> tuple[str | None, str | None]:
    key = (kind, value)
    hit = _cache.get(key)
    if hit is None:
        try:
            hit = (fn(value), None)
        except ValueError as exc:
            hit = (None, str(exc))
        if len(_cache) < _CACHE_MAX:
            _cache[key] = hit
    return hit


def _nulls(s: pl.Series) -> pl.Series:
    """A String series of nulls as long as ``s`` (built by polars, not from a Python list)."""
    return pl.repeat(None, s.len(), dtype=pl.String, eager=True).alias(s.name)


def per_unique(s: pl.Series, kind: str, fn: Callable[[str], str]) -> tuple[pl.Series, pl.Series]:
    """(normalised values, error messages) of a String series, calling ``fn`` once per distinct value."""
    uniq = s.drop_nulls().unique().to_list()
    results = [_checked(kind, v, fn) for v in uniq]
    good = s.replace_strict(uniq, [r[0] for r in results], default=None, return_dtype=pl.String)
    bad = s.replace_strict(uniq, [r[1] for r in results], default=None, return_dtype=pl.String)
    return good, bad


def check_phones(s: pl.Series, region: str | None = None, name: str = "phone"
                 ) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(E.164 numbers, error messages, line type names) for a String series of phone numbers, as
    :func:`engine.audience.check_handle` (``region``: how numbers without ``+`` are read). Numbers in
    international form are checked as columns (:mod:`engine.phones`); only the values the fast path does not
    confirm go through phonenumbers, once per distinct value."""
    fast = classify_international(s, region)
    e164, code = fast.get_column("e164"), fast.get_column("type")
    kinds = code.replace_strict(list(TYPE_NAMES), list(TYPE_NAMES.values()), default=None, return_dtype=pl.String)
    # parsed but invalid: the message needs no parse
    invalid = (code == int(UNKNOWN)).fill_null(False)
    said = _nulls(s)
    if invalid.any():  # only the invalid rows are looked at
        rows = invalid.arg_true()
        sub = s.gather(rows)
        values = sub.unique().to_list()
        said = said.scatter(rows, sub.replace_strict(values, [f"{name} {v!r} is not a valid number" for v in values],
                                                     return_dtype=pl.String))
    done = e164.is_not_null() | invalid
    todo = ~done & s.is_not_null()
    if not todo.any():
        return e164.alias(s.name), said.alias(s.name), kinds.alias(s.name)
    rows = todo.arg_true()  # parsed once per distinct value, on these rows only
    sub_good, sub_bad = per_unique(s.gather(rows), f"{name}:{region}", lambda v: normalise_phone(v, name, region))
    good = _nulls(s).scatter(rows, sub_good)
    bad = _nulls(s).scatter(rows, sub_bad)
    extra = good.drop_nulls().unique()
    typed = classify_international(extra)  # the parsed numbers are E.164 now: typed as columns, nearly all
    names = typed.get_column("type").replace_strict(list(TYPE_NAMES), list(TYPE_NAMES.values()), default=None,
                                                   return_dtype=pl.String).to_list()
    names = [n if n is not None else type_name(v) for v, n in zip(extra.to_list(), names, strict=True)]
    kinds = pl.select(pl.coalesce(kinds, good.replace_strict(extra, names, default=None,
                                                             return_dtype=pl.String))).to_series()
    return (pl.select(pl.coalesce(e164, good)).to_series().alias(s.name),
            pl.select(pl.coalesce(said, bad)).to_series().alias(s.name), kinds.alias(s.name))


def normalise_phones(s: pl.Series, region: str | None = None, name: str = "phone") -> tuple[pl.Series, pl.Series]:
    """E.164 numbers and error messages (null where fine): :func:`check_phones` without the line types."""
    good, bad, _ = check_phones(s, region, name)
    return good, bad


def normalise_whatsapps(s: pl.Series, region: str | None = None) -> tuple[pl.Series, pl.Series]:
    """:func:`normalise_phones` for WhatsApp numbers (the messages name ``whatsapp``)."""
    return normalise_phones(s, region, "whatsapp")


def _email_shapes(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (``v``, ``local``, ``domain``) with ``simple`` (the fast path decides it by its domain) and
    ``refused`` (email-validator always refuses it). Plain ASCII addresses are found with one regex; the
    costlier checks (other scripts, NFC, refused shapes) run only on the rest."""
    plain = (pl.col("v").str.contains(_PLAIN) & (pl.col("local").str.len_bytes() <= 64)
             & (pl.col("v").str.len_bytes() <= 254)).fill_null(False)
    frame = frame.with_columns(plain.alias("simple"), pl.lit(False).alias("refused"))
    mask = frame.get_column("simple") | frame.get_column("v").is_null()
    if mask.all():
        return frame
    one_at = (pl.col("v").str.count_matches("@") == 1) & pl.col("domain").is_not_null()
    # letters of any script, already in NFC (email-validator's normalisation leaves them as they are)
    intl = (pl.col("local").str.contains(_LOCAL_INTL) & (pl.col("local") == pl.col("local").str.normalize("NFC"))
            & ~pl.col("domain").str.contains(r"\s") & (pl.col("local").str.len_bytes() <= 64)
            & (pl.col("v").str.len_bytes() <= 254) & one_at)
    # shapes email-validator always refuses: no @, white space, an unquoted local part with a dot at an edge
    # or two dots in a row, a domain without a dot, several @ without a quoted local part
    local = pl.col("local")
    refused = (~pl.col("v").str.contains("@", literal=True) | pl.col("v").str.contains(r"\s")
               | (pl.col("v").str.count_matches("@", literal=True) > 1) & ~pl.col("v").str.starts_with('"')
               | one_at & ~local.str.starts_with('"') & (local.str.starts_with(".") | local.str.ends_with(".")
                                                          | local.str.contains("..", literal=True))
               | one_at & ~pl.col("domain").str.contains(".", literal=True))
    rows = (~mask).arg_true()  # only the other rows take the costlier checks; the order is kept
    rest = frame.gather(rows).select(intl.fill_null(False).alias("simple"), refused.fill_null(False).alias("refused"))
    return frame.with_columns(frame.get_column("simple").clone().scatter(rows, rest.get_column("simple")),
                              frame.get_column("refused").clone().scatter(rows, rest.get_column("refused")))


def normalise_emails(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Normalised addresses and error messages (null where fine) for a String series of addresses."""
    parts = pl.DataFrame({"v": s}).select(
        pl.col("v"), pl.col("v").str.split_exact("@", 1).struct.rename_fields(["local", "domain"]).alias("p"),
    ).unnest("p")
    parts = _email_shapes(parts)
    simple = parts.get_column("simple")
    domains = parts.get_column("domain").filter(simple).unique().to_list()
    checked = [_checked("email", f"a@{d}", normalise_email) for d in domains]
    ok_domains = [d for d, r in zip(domains, checked, strict=True) if r[0] is not None]
    norm_domains = [r[0].split("@", 1)[1] for r in checked if r[0] is not None]
    fast_dom = pl.col("domain").replace_strict(ok_domains, norm_domains, default=None, return_dtype=pl.String)
    out = parts.select(
        pl.when(pl.col("simple")).then(pl.concat_str([pl.col("local"), pl.lit("@"), fast_dom])).alias("good"),
        pl.lit(None, pl.String).alias("bad"))
    good, bad = out.get_column("good"), out.get_column("bad")
    slow = good.is_null() & parts.get_column("v").is_not_null()  # not decided by its domain
    if slow.any():
        rows = slow.arg_true()
        rest = parts.gather(rows)
        # refused shapes, and simple addresses whose domain failed, are invalid: the message needs no validation
        results: dict[str, tuple[str | None, str | None]] = {}
        for v, known_bad in zip(rest.get_column("v").to_list(),
                                (rest.get_column("refused") | rest.get_column("simple")).to_list(), strict=True):
            if v not in results:
                results[v] = (None, email_error(v)) if known_bad else _checked("email", v, normalise_email)
        values = rest.get_column("v").to_list()
        good = good.clone().scatter(rows, pl.Series([results[v][0] for v in values], dtype=pl.String))
        bad = bad.clone().scatter(rows, pl.Series([results[v][1] for v in values], dtype=pl.String))
    return good.alias(s.name), bad.alias(s.name)


def email_verdicts(s: pl.Series) -> pl.Series:
    """Whether each address is one email-validator accepts (null stays false), with :func:`normalise_emails`'
    answers but cheaper on clean columns: a plain address (one regex) is valid exactly when its domain is
    (validated once per distinct domain); only the other values take :func:`normalise_emails`."""
    plain = (s.str.contains(_PLAIN) & (s.str.find("@", literal=True) <= 64) & (s.str.len_bytes() <= 254)).fill_null(False)
    out = pl.repeat(False, s.len(), dtype=pl.Boolean, eager=True).alias(s.name)
    if plain.any():
        rows = plain.arg_true()
        at = s.gather(rows)
        domain = at.str.slice(at.str.find("@", literal=True) + 1)
        uniq = domain.unique().to_list()
        ok = [d for d in uniq if _checked("email", f"a@{d}", normalise_email)[0] is not None]
        out = out.scatter(rows, domain.is_in(pl.Series(ok, dtype=pl.String).implode()))
    rest = ~plain & s.is_not_null()
    if rest.any():
        rows = rest.arg_true()
        out = out.scatter(rows, normalise_emails(s.gather(rows))[0].is_not_null())
    return out


def valid_emails(column: pl.Expr) -> pl.Expr:
    """True where a String column holds an address email-validator accepts (syntax only): :func:`email_verdicts`
    over the column. The e-mail channel's column check (no per-row Python)."""
    return column.map_batches(email_verdicts, return_dtype=pl.Boolean, is_elementwise=True)


def check_contact(contact: ContactField, s: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series | None]:
    """(normalised handles, error messages, handle types or None) for a String series of a registered contact
    field, with :func:`engine.audience.check_handle`'s answers: the field's ``normalise_column`` when it has one
    (called with ``region=`` when the field has a region), else its ``normalise`` once per distinct value;
    handle types from the column form, else from ``handle_type`` once per distinct normalised handle."""
    found: Sequence[pl.Series]
    if contact.normalise_column is not None:
        found = (contact.normalise_column(s, region=contact.region) if contact.region
                 else contact.normalise_column(s))
    else:
        uniq = s.drop_nulls().unique().to_list()
        results = [normalised_handle(contact, v) for v in uniq]
        found = (s.replace_strict(uniq, [r[0] for r in results], default=None, return_dtype=pl.String),
                 s.replace_strict(uniq, [r[1] for r in results], default=None, return_dtype=pl.String))
    good, bad = found[0], found[1]
    kinds = found[2] if len(found) > 2 else None
    if kinds is None and contact.handle_type is not None:
        handles = good.drop_nulls().unique().to_list()
        kinds = good.replace_strict(handles, [contact.handle_type(h) for h in handles], default=None,
                                    return_dtype=pl.String)
    return good, bad, kinds
