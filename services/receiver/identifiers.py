"""Danish CPR numbers: the direct identifier that must never reach the catalogue.

The catalogue may leave NGC, so every free-text value a region sends (pseudonyms,
department, platform, file names) is searched for something that looks like a CPR number:
``DDMMYY-XXXX`` or ten digits in a row whose first six are a real date. A date is real for
the century the seventh digit implies (the CPR office's rule), so ``290200-4xxx`` (29
February 2000) is a CPR number while ``290200-1xxx`` (1900 was no leap year) is not. Digit
runs longer than ten are not CPR numbers (lab barcodes), so the match must stand alone.

The value found is never echoed back or logged: only the field's name is reported.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable

# Six date digits, an optional hyphen (or space), four digits; no digit on either side.
_CANDIDATE = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})[- ]?(\d)\d{3}(?!\d)")


def century(year2: int, seventh: int) -> int:
    """The century of a CPR number's two-digit year, from its seventh digit."""
    if seventh <= 3:
        return 1900
    if seventh in (4, 9):
        return 2000 if year2 <= 36 else 1900
    return 2000 if year2 <= 57 else 1800


def is_cpr_date(day: int, month: int, year2: int, seventh: int) -> bool:
    """Whether DDMMYY is a calendar date in the century the seventh digit implies."""
    if not 1 <= month <= 12:
        return False
    year = century(year2, seventh) + year2
    return 1 <= day <= calendar.monthrange(year, month)[1]


def contains_cpr(text: str) -> bool:
    """Whether ``text`` holds something that looks like a Danish CPR number."""
    for match in _CANDIDATE.finditer(text):
        day, month, year2, seventh = (int(g) for g in match.groups())
        if is_cpr_date(day, month, year2, seventh):
            return True
    return False


def first_direct_identifier(fields: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first field whose value looks like a CPR number, if any."""
    for name, value in fields:
        if contains_cpr(value):
            return name
    return None
