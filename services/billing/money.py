"""Money in billing: integer øre, exact genome equivalents, and how both are written.

Amounts are integer øre and genome equivalents are Decimals held as integer micro-GE in
storage (6 decimal places, the precision of the events), so no float ever touches a krone:
SQLite's NUMERIC would silently store a float, an integer never does. The grant is held in
Danish kroner; an amount in any other currency is refused, never converted, because the
conversion rate would be a fact billing cannot explain afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

CURRENCY = "DKK"
ORE_PER_KRONE = 100


class MoneyError(ValueError):
    """An amount billing cannot take: malformed, negative, too precise, or not in DKK."""


class ForeignCurrency(MoneyError):
    """An amount in another currency than the grant's."""


_AMOUNT = re.compile(
    r"^\s*(?:(?P<pre>[A-Za-z]{3})\s+)?(?P<num>[+-]?\d+(?:\.\d+)?)\s*(?P<post>[A-Za-z]{3})?\s*$"
)


def parse_dkk(text: str) -> int:
    """Øre in an amount written plainly: ``532281``, ``532281.50``, ``532281 DKK`` or ``DKK 10``.

    Refuses thousands separators and decimal commas (``532.281`` is ambiguous between Danish
    and English writing, so machine input is plain), more than two decimals, negative
    amounts and any currency code but DKK.
    """
    match = _AMOUNT.match(text)
    if match is None:
        raise MoneyError(
            f"malformed amount {text!r}: write it plainly in DKK, e.g. 532281 or 532281.50 "
            "(no thousands separators, a decimal point, at most two decimals)"
        )
    if match["pre"] and match["post"]:
        raise MoneyError(f"malformed amount {text!r}: give the currency once")
    currency = (match["pre"] or match["post"] or CURRENCY).upper()
    if currency != CURRENCY:
        raise ForeignCurrency(
            f"refused {text.strip()!r}: the Novo Nordisk Foundation grant is held in DKK, not {currency}; "
            "record the amount in DKK as booked by finance"
        )
    return dkk_to_ore(Decimal(match["num"]), original=text)


def dkk_to_ore(amount: Decimal, *, original: str | None = None) -> int:
    """Øre in a DKK Decimal that has at most two decimals and is not negative."""
    shown = original if original is not None else str(amount)
    if not amount.is_finite():
        raise MoneyError(f"malformed amount {shown!r}")
    if amount < 0:
        raise MoneyError(f"amount {shown!r} is negative: the grant ledger takes only additions here")
    ore = amount * ORE_PER_KRONE
    if ore != ore.to_integral_value():
        raise MoneyError(f"amount {shown!r} has more than two decimals: DKK are counted in whole øre")
    return int(ore)


def ore_to_dkk(ore: int) -> Decimal:
    """The DKK Decimal (two decimals) of an amount in øre, for machine formats."""
    return (Decimal(ore) / ORE_PER_KRONE).quantize(Decimal("0.01"))


def format_danish(ore: int) -> str:
    """``1.234,56 kr.``: how finance reads an amount; a minus sign leads negative ones."""
    sign = "-" if ore < 0 else ""
    kroner, rest = divmod(abs(ore), ORE_PER_KRONE)
    grouped = f"{kroner:,}".replace(",", ".")
    return f"{sign}{grouped},{rest:02d} kr."


def format_decimal_danish(value: Decimal, places: int) -> str:
    """A number as Danish is written: thousands points and a decimal comma, ``2.016,00``."""
    quantum = Decimal(1).scaleb(-places)
    text = f"{value.quantize(quantum, rounding=ROUND_HALF_UP):,.{places}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def format_integer_danish(count: int) -> str:
    """A count with thousands points, ``2.016``."""
    return format_decimal_danish(Decimal(count), 0)


def format_ge_danish(ge: Decimal, places: int = 2) -> str:
    """Genome equivalents with a decimal comma and thousands points, e.g. ``2.016,00``."""
    return format_decimal_danish(ge, places)


GE_PLACES = 6
"""Decimals of a genome equivalent as the events carry it: every GE is exact at 6."""


def ge_places(values: Iterable[Decimal], fewest: int = 2) -> int:
    """The fewest decimals (at least ``fewest``, at most 6) that write every value exactly.

    One precision for a whole statement keeps its columns aligned, and writing every value
    exactly means a line that is paid never reads 0,00 genome equivalents (a sample of
    0.000043 GE under the `bases` rule) and the lines visibly add up to their region.
    """
    places = fewest
    for value in values:
        while places < GE_PLACES and value != value.quantize(Decimal(1).scaleb(-places)):
            places += 1
    return places


def format_ge_exact(ge: Decimal) -> str:
    """One amount of genome equivalents, written with the decimals it needs (at least two):
    ``2.016,00``, ``0,000215``. For a sentence; a table takes one precision (``ge_places``)."""
    return format_ge_danish(ge, ge_places([ge]))
