"""CSV cells a spreadsheet opens safely: the one rule for every CSV genomhub writes.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and
one that starts with a tab or a carriage return can hide one behind it (CSV injection):
a department named ``=HYPERLINK("http://...")`` in a finance statement would become a link
that leaks the sheet, or worse, once finance opens the file. OWASP's rule: such a cell is
written with a single quote in front, which every spreadsheet shows as text. Numbers are
left alone: a negative amount is a number, not a formula, and must stay one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_risk(value: object) -> bool:
    """Whether ``value`` as text would be read as a formula by a spreadsheet."""
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as text: quoted when it starts like a formula."""
    return "'" + value if formula_risk(value) else value


class SafeDictWriter:
    """``csv.DictWriter`` whose every cell goes through :func:`safe_cell`, and whose rows
    stay rows: a row with a line break in a cell is written with every cell quoted.

    Python's writer (3.11) quotes a cell only for the characters of its own line terminator,
    so with ``"\n"`` a cell holding a bare CR went out unquoted and a spreadsheet read a new
    row there: a department could forge a line of the statement.
    """

    def __init__(self, handle: IO[str], fieldnames: Iterable[str], **options: Any) -> None:
        names = list(fieldnames)
        self._fieldnames = names
        self._writer = csv.DictWriter(handle, fieldnames=names, **options)
        self._quoted = csv.DictWriter(handle, fieldnames=names, **{**options, "quoting": csv.QUOTE_ALL})

    def writeheader(self) -> None:
        self.writerow({name: name for name in self._fieldnames})

    def writerow(self, row: Mapping[str, Any]) -> None:
        cells = {key: safe_cell(value) for key, value in row.items()}
        breaks = any(isinstance(v, str) and ("\r" in v or "\n" in v) for v in cells.values())
        (self._quoted if breaks else self._writer).writerow(cells)

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)
