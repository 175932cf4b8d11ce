"""The engine's contact-handle normalisers, in the two forms a :class:`engine.ContactField` takes: per value
(text → normalised text, ``ValueError`` with the reason) and over a polars String column (vectorised, with
the same answers). The channel plugins reading phone numbers, WhatsApp numbers and e-mail addresses register
them (``register_contact_fields``); several plugins sharing a field share these very functions.

Each imports its library (phonenumbers, email-validator, polars) on first call, so registering a field costs
nothing at start-up. The work is done by :mod:`engine.audience` (per value), :mod:`engine.columnar.contacts`
and :mod:`engine.phones` (columns); the differential tests in ``tests/columnar`` hold the two forms together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def phone_number(text: str, region: str | None = None) -> str:
    """The E.164 form of a valid phone number; ``ValueError`` (``phone '+1555' is not a valid number``)
    otherwise. Without ``region`` the number must be in international form; with one (``GB``), a number
    without ``+`` is read as that region's national form."""
    from engine.audience import normalise_phone

    return normalise_phone(text, "phone", region)


def phone_numbers(s: pl.Series, region: str | None = None) -> tuple[pl.Series, pl.Series, pl.Series]:
    """:func:`phone_number` over a String series: (E.164 numbers, error messages, line types), null where
    there is no value / no error (numbers in international form checked as columns, the rest parsed once per
    distinct value)."""
    from engine.columnar.contacts import check_phones

    return check_phones(s, region, "phone")


def phone_line_type(e164: str) -> str:
    """The line type of a valid number in E.164 form (``mobile``, ``fixed_line`` …), as the readers record it
    in ``handle_type.<attribute>``."""
    from engine.phones import type_name

    return type_name(e164)


def whatsapp_number(text: str, region: str | None = None) -> str:
    """:func:`phone_number` for WhatsApp numbers (the reason names ``whatsapp``)."""
    from engine.audience import normalise_phone

    return normalise_phone(text, "whatsapp", region)


def whatsapp_numbers(s: pl.Series, region: str | None = None) -> tuple[pl.Series, pl.Series, pl.Series]:
    """:func:`phone_numbers` for WhatsApp numbers (the reasons name ``whatsapp``)."""
    from engine.columnar.contacts import check_phones

    return check_phones(s, region, "whatsapp")


def email_address(text: str) -> str:
    """The normalised address (syntax checked, no DNS look-up); ``ValueError`` (``email 'a@b' is not a valid
    address: …``) otherwise."""
    from engine.audience import normalise_email

    return normalise_email(text)


#: the handle type the readers record (``handle_type.email``) for an address they validated and normalised
EMAIL_ADDRESS = "address"


def email_handle_type(address: str) -> str:
    """The handle type of a valid, normalised address: always :data:`EMAIL_ADDRESS`. Recorded by the readers
    in ``handle_type.<attribute>``, it marks the addresses they validated, so that the e-mail channel's
    column check trusts them instead of validating them again."""
    return EMAIL_ADDRESS


def email_addresses(s: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series]:
    """:func:`email_address` over a String series: (normalised addresses, error messages, handle types:
    :data:`EMAIL_ADDRESS` where valid), a vectorised syntax check with only the unusual addresses (and each
    distinct domain) going through email-validator."""
    import polars as pl

    from engine.columnar.contacts import normalise_emails

    good, bad = normalise_emails(s)
    kinds = pl.select(pl.when(good.is_not_null()).then(pl.lit(EMAIL_ADDRESS))).to_series().alias(s.name)
    return good, bad, kinds
