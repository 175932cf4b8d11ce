"""Reachability of customers on a channel, per customer and as a polars expression over a fact frame.

Every direct channel answers in the same order:

1. no contact handle (missing or empty) → ``contact_unavailable``;
2. a recorded ``subscription.<channel>`` status that blocks sending (``unsubscribed``, ``hard_bounced``,
   ``invalid``, ``contact_unavailable`` …) wins; a value outside the closed set of statuses counts as
   ``invalid`` (never reachable);
3. a malformed handle → ``invalid``: the audience reader marked it (``handle_error.<contact>`` holds the
   reason, see :func:`handle_error`), or the channel's own check of the handle fails;
4. otherwise the recorded status, or ``valid`` when nothing is recorded.

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
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import phonenumbers

from engine.lazy import lazy
from engine.model import SUBSCRIPTION_STATUSES, Customer, Reachability

if TYPE_CHECKING:
    import polars as pl
    import polars.selectors as cs
    from polars._typing import PolarsDataType
else:  # polars is imported when a frame is first used, not with the plugins
    pl, cs = lazy("polars"), lazy("polars.selectors")

_OPEN = tuple(r.value for r in Reachability if r.reachable)
#: recorded ``subscription.<channel>`` value -> (its status, whether that status is reachable)
_RECORDED = {s: (Reachability(s), Reachability(s).reachable) for s in SUBSCRIPTION_STATUSES}

#: Attribute prefix of the reasons the audience reader found a contact handle malformed:
#: ``handle_error.phone`` = "phone '+1555' is not a valid number" (the handle itself is kept as read).
HANDLE_ERROR = "handle_error."
#: Attribute prefix of the line type the audience reader found for a valid phone number:
#: ``handle_type.phone`` = ``mobile`` (a ``phonenumbers.PhoneNumberType`` name in lower case), so channels
#: that need a mobile number trust the reader instead of parsing the number again.
HANDLE_TYPE = "handle_type."


def handle_error(customer: Customer, contact: str) -> str | None:
    """Why the audience reader found the customer's ``contact`` handle malformed, or None."""
    return customer.attributes.get(HANDLE_ERROR + contact)


def handle_ok_expr(contact: str) -> pl.Expr:
    """True where the audience reader did not mark the ``contact`` handle malformed (a frame without the
    ``customer.handle_error.<contact>`` column: true everywhere, as one scalar)."""
    return fact_column(f"customer.{HANDLE_ERROR}{contact}", scalar_if_missing=True).is_null()


def recorded_reason(customer: Customer, channel: str) -> str | None:
    """Why the recorded ``subscription.<channel>`` value blocks sending (None when it does not)."""
    raw = customer.attributes.get(f"subscription.{channel}")
    if raw is None or raw in _OPEN:
        return None
    if raw not in SUBSCRIPTION_STATUSES:
        return (f"subscription.{channel} is {raw!r}, not a known status "
                f"({', '.join(SUBSCRIPTION_STATUSES)})")
    return f"subscription.{channel} is recorded as {raw!r}"


def unreachable_reason(channel: object, customer: Customer, message: object, status: Reachability) -> str | None:
    """Why ``channel`` cannot reach ``customer`` (None when ``status`` is reachable): the channel's own
    ``reachability_reason(customer, message)`` when it has one, else what the status and the recorded
    ``subscription.<channel>`` value say."""
    if status.reachable:
        return None
    own = getattr(channel, "reachability_reason", None)
    if callable(own):
        found = own(customer, message)
        return None if found is None else str(found)
    name = str(getattr(channel, "name", ""))
    return recorded_reason(customer, name) or {
        Reachability.CONTACT_UNAVAILABLE: "no contact handle for this channel",
        Reachability.INVALID: "the contact handle is malformed",
        Reachability.DND: "on the do-not-disturb registry (customer.dnd)",
    }.get(status, str(status))


def fact_column(path: str, dtype: PolarsDataType | None = None, *, scalar_if_missing: bool = False) -> pl.Expr:
    """The frame column ``path`` as ``dtype`` (default: String); all nulls when the frame has no such column.

    With ``scalar_if_missing`` a missing column is one null (broadcast by ``with_columns``), which avoids
    copying a present column (for plans that combine it with other columns, like the bulk plan)."""
    dtype = pl.String if dtype is None else dtype
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


def typed_or_checked(contact: str, kinds: tuple[str, ...], predicate: Callable[[str], object] | None
                     ) -> Callable[[pl.Expr], pl.Expr]:
    """An expression builder for a phone attribute: where the audience reader recorded the number's line type
    (``handle_type.<contact>``), the handle is valid exactly when that type is one of ``kinds`` (the reader
    already checked the number: no second parse); where it did not (a frame built otherwise), ``predicate``
    decides, once per distinct value."""
    kind = fact_column(f"customer.{HANDLE_TYPE}{contact}", scalar_if_missing=True)

    def untyped(s: pl.Series) -> pl.Series:
        parts = s.struct.unnest()
        value, typed = parts.to_series(0), parts.to_series(1)
        need = typed.is_null() & value.is_not_null() & (value.str.len_bytes() > 0)
        if predicate is None or not need.any():
            return pl.Series([None] * s.len(), dtype=pl.Boolean)
        uniq = value.filter(need).unique().to_list()
        verdicts = [bool(predicate(v)) for v in uniq]
        return value.set(~need, None).replace_strict(uniq, verdicts, default=None, return_dtype=pl.Boolean)

    def build(column: pl.Expr) -> pl.Expr:
        known = kind.is_in(pl.Series(kinds, dtype=pl.String).implode())
        checked = pl.struct(column.alias("v"), kind.cast(pl.String).alias("k")).map_batches(
            untyped, return_dtype=pl.Boolean, is_elementwise=True)
        return pl.coalesce(pl.when(kind.is_not_null()).then(known), checked)

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


def _recorded_status(channel: str, *, scalar_if_missing: bool = False) -> pl.Expr:
    """The recorded status string: ``valid`` when null, ``invalid`` when outside the closed set."""
    recorded = fact_column(f"customer.subscription.{channel}", scalar_if_missing=scalar_if_missing)
    known = recorded.is_in(pl.Series(SUBSCRIPTION_STATUSES, dtype=pl.String).implode())
    return pl.when(recorded.is_null()).then(pl.lit(Reachability.VALID.value)).when(known).then(recorded) \
        .otherwise(pl.lit(Reachability.INVALID.value))


def ordered_reachability_expr(channel: str, has_contact: pl.Expr, valid: pl.Expr | None = None) -> pl.Expr:
    """:func:`ordered_reachability` over a frame: the status string per row, from a Boolean ``has_contact``
    column, the frame's ``customer.subscription.<channel>`` column (if any), and a Boolean ``valid`` column
    (only read on rows that have a contact)."""
    status = _recorded_status(channel)
    # plain ``is_in`` on the string column (no Enum cast): the cheap form
    blocked = ~status.is_in(pl.Series(_OPEN, dtype=pl.String).implode())
    order = pl.when(~has_contact).then(pl.lit(Reachability.CONTACT_UNAVAILABLE.value)).when(blocked).then(status)
    if valid is not None:
        order = order.when(~valid).then(pl.lit(Reachability.INVALID.value))
    return order.otherwise(status)


def ordered_reachable_expr(channel: str, has_contact: pl.Expr, valid: pl.Expr | None = None) -> pl.Expr:
    """``ordered_reachability_expr(...)`` is a reachable status, as one Boolean (never null): a contact, no
    blocking recorded status, and a valid handle. Cheaper than building the status strings."""
    recorded = fact_column(f"customer.subscription.{channel}", scalar_if_missing=True)
    open_ = recorded.is_null() | pl.any_horizontal([recorded == s for s in _OPEN])  # a few ``==`` beat a hash look-up
    out = has_contact & open_.fill_null(False)
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
    ``valid`` applied value by value. ``kinds``, the handle types the reader records (a phone number's line
    types such as ``mobile``, an e-mail address's ``address``), makes both checks (:meth:`of` and, unless ``valid_expr`` is given, the column check: :func:`typed_or_checked`) trust
    the reader: a handle it typed is valid when its type is one of them, and ``valid`` is asked only for
    handles it did not type. Without ``valid`` every handle is taken as well-formed. ``rule`` states
    the handle rule in words, for the reason of an ``invalid`` answer (:meth:`reason`). A handle the audience
    reader marked malformed (``handle_error.<contact>``) is ``invalid`` whatever ``valid`` says.

    >>> reach = ContactReach("line", "line_id", valid=str.isalnum, valid_expr=lambda c: c.str.contains("^[A-Za-z0-9]+$"))
    >>> reach.of(Customer("c1", {"line_id": "U123"}))
    <Reachability.VALID: 'valid'>
    """

    channel: str
    contact: str
    valid: Callable[[str], object] | None = None
    valid_expr: Callable[[pl.Expr], pl.Expr] | None = None
    rule: str | None = None
    kinds: tuple[str, ...] | None = None
    # the attribute names :meth:`of` reads, built once (it runs per recipient and channel)
    _recorded: str = field(init=False, repr=False, compare=False)
    _marked: str = field(init=False, repr=False, compare=False)
    _typed: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_recorded", f"subscription.{self.channel}")
        object.__setattr__(self, "_marked", HANDLE_ERROR + self.contact)
        object.__setattr__(self, "_typed", HANDLE_TYPE + self.contact)

    def of(self, customer: Customer, message: object = None) -> Reachability:
        """The reachability of one customer: :func:`ordered_reachability` with the handle checks of this
        contact, inlined (the per-recipient hot path). ``message`` is ignored: with it, ``of`` can stand in
        for a channel's ``reachability(customer, message)`` (:meth:`ContactReachability.reachability_of`)."""
        attrs = customer.attributes
        handle = attrs.get(self.contact)
        if not handle:
            return Reachability.CONTACT_UNAVAILABLE
        raw = attrs.get(self._recorded)
        if raw is None:
            status, open_ = Reachability.VALID, True
        else:
            known = _RECORDED.get(raw) if isinstance(raw, str) else None
            if known is None:  # outside the closed set of statuses
                return Reachability.INVALID
            status, open_ = known
        if open_:
            if attrs.get(self._marked) is not None:
                return Reachability.INVALID
            valid = self.valid
            if valid is not None:
                # a handle the reader typed is valid when its type is one of ``kinds`` (as the column check
                # trusts it: no second parse of a number or address the reader has just checked)
                typed = attrs.get(self._typed) if self.kinds is not None else None
                if (typed not in self.kinds) if typed is not None else not valid(str(handle)):  # type: ignore[operator]
                    return Reachability.INVALID
        return status

    def reason(self, customer: Customer) -> str | None:
        """Why the channel cannot reach ``customer`` (None when it can): the missing handle, the recorded
        status, or what is wrong with the handle (the reader's reason, else the handle rule)."""
        status = self.of(customer)
        if status.reachable:
            return None
        if status is Reachability.CONTACT_UNAVAILABLE:
            return f"no {self.contact}"
        recorded = recorded_reason(customer, self.channel)
        if recorded is not None or status is not Reachability.INVALID:
            return recorded or str(status)
        marked = handle_error(customer, self.contact)
        if marked is not None:
            return marked
        rule = f": {self.rule}" if self.rule else ""
        return f"{self.contact} {customer.attributes.get(self.contact)!r} is malformed{rule}"

    def _valid_expr(self, column: pl.Expr) -> pl.Expr:
        build = self.valid_expr or (check_each(self.valid) if self.valid is not None else None)
        if self.kinds is not None and self.valid_expr is None:
            build = typed_or_checked(self.contact, self.kinds, self.valid)
        ok = handle_ok_expr(self.contact)
        # a handle the reader marked malformed is not checked again (nor parsed)
        return ok if build is None else ok & build(pl.when(ok).then(column))

    def expr(self) -> pl.Expr:
        """The status string per row of a frame with ``customer.<contact>`` and
        ``customer.subscription.<channel>`` (either may be missing: all nulls)."""
        column = fact_column(f"customer.{self.contact}")
        return ordered_reachability_expr(self.channel, nonempty(column), self._valid_expr(column))

    def reachable_expr(self) -> pl.Expr:
        """Whether :meth:`expr` is a reachable status, per row (Boolean, never null; the bulk plan's form).
        A frame lacking both columns gives one ``False`` (broadcast by ``with_columns``)."""
        column = fact_column(f"customer.{self.contact}", scalar_if_missing=True)
        return ordered_reachable_expr(self.channel, nonempty(column), self._valid_expr(column))


class ContactReachability:
    """Mixin for a channel whose reachability is exactly one :class:`ContactReach` (class attribute ``reach``):
    it supplies ``reachability``, ``reachability_expr`` and ``reachable_expr`` from it."""

    reach: ContactReach

    def reachability(self, customer: Customer, message: object) -> Reachability:
        """No contact handle → contact_unavailable; a recorded blocking status wins; a malformed handle →
        invalid; otherwise the recorded status (valid when none)."""
        return self.reach.of(customer)

    @staticmethod
    def reachability_of(channel: object) -> Callable[[Customer, object], Reachability]:
        """``channel.reachability``, or the same answer one call shorter: ``reach.of`` when ``channel`` keeps
        this mixin's ``reachability`` (for loops that ask per recipient and channel)."""
        if isinstance(channel, ContactReachability) and \
                type(channel).reachability is ContactReachability.reachability:
            return channel.reach.of
        return channel.reachability  # type: ignore[attr-defined]

    def reachability_reason(self, customer: Customer, message: object) -> str | None:
        """Why the channel cannot reach ``customer`` (None when it can), for the trace."""
        return self.reach.reason(customer)

    def reachability_expr(self, message: object) -> pl.Expr:
        """``reachability`` for every row of a frame, as the status string."""
        return self.reach.expr()

    def reachable_expr(self, message: object) -> pl.Expr:
        """Whether ``reachability_expr`` is a reachable status, one Boolean per row (the bulk plan's form)."""
        return self.reach.reachable_expr()


def valid_emails(column: pl.Expr) -> pl.Expr:
    """True where a String column holds an address email-validator accepts (syntax only): the e-mail
    channel's column check (:func:`engine.columnar.contacts.valid_emails`, imported on first use)."""
    from engine.columnar.contacts import valid_emails as verdicts

    return verdicts(column)
