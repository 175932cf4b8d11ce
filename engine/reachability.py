"""Reachability of customers on a channel, per customer and as a polars expression over a fact frame.

Every direct channel answers in the same order:

1. no contact handle (missing or empty) → ``contact_unavailable``;
2. a recorded ``subscription.<channel>`` status that blocks sending (``unsubscribed``, ``hard_bounced``,
   ``invalid``, ``contact_unavailable`` …) wins;
3. a malformed handle → ``invalid``;
4. otherwise the recorded status, or ``valid`` when nothing (or an unknown value) is recorded.

:class:`ContactReach` gives that order for one contact attribute in both forms, from one set of
parameters, so they agree row by row. :func:`ordered_reachability` and :func:`ordered_reachability_expr`
are the order itself, for channels whose "has a contact" and "is valid" are not about one attribute.
In the expression form, fact columns are named by path (``customer.phone``, ``customer.subscription.sms``)
and a column the frame lacks reads as all nulls (:func:`fact_column`).
:func:`check_each` turns a Python check into a column check; :func:`e164_number` is the phone-number check
the phone channels share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
import polars as pl
import polars.selectors as cs

from engine.model import Customer, Reachability

_STATES = tuple(r.value for r in Reachability)
_BLOCKING = tuple(r.value for r in Reachability if not r.reachable)
_STATES_S = pl.Series(_STATES, dtype=pl.String)
_BLOCKING_S = pl.Series(_BLOCKING, dtype=pl.String)


def fact_column(path: str, dtype: pl.DataType = pl.String, *, scalar_if_missing: bool = False) -> pl.Expr:
    """The frame column ``path`` as ``dtype``; all nulls when the frame has no such column.

    With ``scalar_if_missing`` a missing column is one null (broadcast by ``with_columns``), which avoids
    copying a present column (for plans that combine it with other columns, like the bulk plan)."""
    none = pl.lit(None, dtype) if scalar_if_missing else pl.repeat(None, pl.len(), dtype=dtype)
    return pl.coalesce(cs.by_name(path, require_all=False).cast(dtype), none)


@lru_cache(maxsize=65536)
def e164_number(value: str, region: str | None = None) -> str | None:
    """The E.164 form (``+4415…``) of a valid phone number, else None. ``region`` (ISO code) reads numbers
    stored without ``+``; any line type counts (a channel needing mobiles checks the type itself)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_valid_number(number) else None


def check_each(predicate: Callable[[str], object]) -> Callable[[pl.Expr], pl.Expr]:
    """An expression builder from a Python predicate on a string: the Boolean column that is true where
    the value is non-empty and ``predicate(value)`` is truthy (false on nulls and empty strings). For
    checks with no native polars form (e-mail or phone-number parsing)."""

    def build(column: pl.Expr) -> pl.Expr:
        return column.map_batches(
            lambda s: pl.Series([bool(v) and bool(predicate(v)) for v in s.to_list()], dtype=pl.Boolean),
            return_dtype=pl.Boolean, is_elementwise=True)

    return build


def ordered_reachability(customer: Customer, channel: str, has_contact: bool,
                         valid: Callable[[], bool] | None = None) -> Reachability:
    """The reachability order for one customer, given whether it has a contact handle and a check of that
    handle (called only when the recorded status does not already block sending)."""
    if not has_contact:
        return Reachability.CONTACT_UNAVAILABLE
    status = Reachability.recorded(customer, channel, None)
    if status.reachable and valid is not None and not valid():
        return Reachability.INVALID
    return status


def ordered_reachability_expr(channel: str, has_contact: pl.Expr, valid: pl.Expr | None = None) -> pl.Expr:
    """:func:`ordered_reachability` over a frame: the status string per row, from a Boolean ``has_contact``
    column, the frame's ``customer.subscription.<channel>`` column (if any), and a Boolean ``valid`` column
    (only read on rows that have a contact)."""
    recorded = fact_column(f"customer.subscription.{channel}")
    # plain ``is_in`` on the string column (no Enum cast, no nested string when/then): the cheap form
    known = recorded.is_in(_STATES_S.implode()).fill_null(False)
    blocked = recorded.is_in(_BLOCKING_S.implode()).fill_null(False)
    order = pl.when(~has_contact).then(pl.lit(Reachability.CONTACT_UNAVAILABLE.value)).when(blocked).then(recorded)
    if valid is not None:
        order = order.when(~valid).then(pl.lit(Reachability.INVALID.value))
    return order.when(known).then(recorded).otherwise(pl.lit(Reachability.VALID.value))


def ordered_reachable_expr(channel: str, has_contact: pl.Expr, valid: pl.Expr | None = None) -> pl.Expr:
    """``ordered_reachability_expr(...)`` is a reachable status, as one Boolean (never null): a contact, no
    blocking recorded status, and a valid handle. Cheaper than building the status strings."""
    recorded = fact_column(f"customer.subscription.{channel}", scalar_if_missing=True)
    blocked = pl.any_horizontal([recorded == b for b in _BLOCKING])  # a few ``==`` beat one hash look-up
    out = has_contact & ~blocked.fill_null(False)
    return out if valid is None else out & valid.fill_null(False)


def no_match(column: pl.Expr, pattern: str) -> pl.Expr:
    """True where ``pattern`` occurs nowhere in the string (also true on nulls: read it only where there is a
    handle). With a character class this is
    "every character is allowed", and ``str.find`` runs about twice as fast as an anchored ``^[…]+$``."""
    return column.str.find(pattern).is_null()


def nonempty(column: pl.Expr) -> pl.Expr:
    """True where a string fact column holds a contact handle (neither null nor empty)."""
    return (column.str.len_bytes() > 0).fill_null(False)


@dataclass(frozen=True, slots=True)
class ContactReach:
    """The reachability order of a channel reaching customers through one contact attribute.

    ``channel`` names the recorded status (``subscription.<channel>``), ``contact`` the attribute holding
    the handle (``phone``, ``email`` …). ``valid`` checks a handle (given as a string); ``valid_expr`` is the
    same check on the contact column (a string column, read only where it holds a handle) and defaults to
    ``valid`` applied value by value. Without ``valid`` every handle is taken as well-formed.

    >>> reach = ContactReach("line", "line_id", valid=str.isalnum, valid_expr=lambda c: c.str.contains("^[A-Za-z0-9]+$"))
    >>> reach.of(Customer("c1", {"line_id": "U123"}))
    <Reachability.VALID: 'valid'>
    """

    channel: str
    contact: str
    valid: Callable[[str], object] | None = None
    valid_expr: Callable[[pl.Expr], pl.Expr] | None = None

    def of(self, customer: Customer) -> Reachability:
        """The reachability of one customer."""
        handle = customer.attributes.get(self.contact)
        check = self.valid
        return ordered_reachability(customer, self.channel, bool(handle),
                                    None if check is None else lambda: bool(check(str(handle))))

    def expr(self) -> pl.Expr:
        """The status string per row of a frame with ``customer.<contact>`` and
        ``customer.subscription.<channel>`` (either may be missing: all nulls)."""
        column = fact_column(f"customer.{self.contact}")
        build = self.valid_expr or (check_each(self.valid) if self.valid is not None else None)
        return ordered_reachability_expr(self.channel, nonempty(column), None if build is None else build(column))

    def reachable_expr(self) -> pl.Expr:
        """Whether :meth:`expr` is a reachable status, per row (Boolean, never null; the bulk plan's form).
        A frame lacking both columns gives one ``False`` (broadcast by ``with_columns``)."""
        column = fact_column(f"customer.{self.contact}", scalar_if_missing=True)
        build = self.valid_expr or (check_each(self.valid) if self.valid is not None else None)
        return ordered_reachable_expr(self.channel, nonempty(column), None if build is None else build(column))


class ContactReachability:
    """Mixin for a channel whose reachability is exactly one :class:`ContactReach` (class attribute ``reach``):
    it supplies ``reachability``, ``reachability_expr`` and ``reachable_expr`` from it."""

    reach: ContactReach

    def reachability(self, customer: Customer, message: object) -> Reachability:
        """No contact handle → contact_unavailable; a recorded blocking status wins; a malformed handle →
        invalid; otherwise the recorded status (valid when none)."""
        return self.reach.of(customer)

    def reachability_expr(self, message: object) -> pl.Expr:
        """``reachability`` for every row of a frame, as the status string."""
        return self.reach.expr()

    def reachable_expr(self, message: object) -> pl.Expr:
        """Whether ``reachability_expr`` is a reachable status, one Boolean per row (the bulk plan's form)."""
        return self.reach.reachable_expr()
