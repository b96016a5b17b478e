"""Danish CPR numbers: the direct identifier that must never reach the catalogue or billing.

The one CPR guard of genomhub. The receiver asks it of everything a region types, and every
consumer asks it again of every identifier and free-text field of every event it decodes
(``shared/events.py``), because the catalogue may leave NGC and a producer on the bus is not
necessarily the receiver.

People do not type a CPR number the way the CPR office prints it. A spreadsheet turns the
hyphen into an en dash or a minus sign, a word processor glues the two halves with a
non-breaking space, a copy from a web page carries zero-width spaces or soft hyphens, and
some write ``12-03-85-1234``, ``120385_1234``, ``12.03.85 1234`` or digits of another script
(full-width, Arabic-Indic). So the text is first normalised: Unicode NFKC, every digit of any
script read as its value, and invisible characters (format characters such as the zero-width
space and the soft hyphen, combining marks) dropped, since a reader sees the digits on
either side as one run. It is then cut into *digit groups*: runs of digits, where a visible
separator (a space, a dash, any punctuation, a sign or symbol, a control character) ends
a group but keeps the next one in the same *cluster*, and any other character (a letter, a
currency sign) ends the cluster.

A CPR number is found where consecutive groups of one cluster have the shape people give
one: ten digits, broken (if at all) only after the day, the month or the year, never inside
the four serial digits; and where the six date digits are a real date in the century the seventh digit implies (the CPR office's rule): ``290200-4xxx``
(29 February 2000) is one, ``290200-1xxx`` (1900 was no leap year) is not. The shape is what
keeps timestamps apart: ``2026-12-01_20-15-30`` holds the ten digits ``1201201530``, a
valid date read as DDMMYY, but in five pairs, which is how clocks are written, not CPR
numbers.

A digit run longer than ten with nothing inside it is a lab barcode, not a CPR number, and
is left alone: candidates start and end on group boundaries, so an unbroken run never
yields one. Separators end that exemption: ``0101901234-7`` and ``7 120385-1234`` hold a
CPR number and a stray digit, because a barcode is never printed with a dash inside it.

The value found is never echoed back or logged: only the field's name is reported.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Any

CPR_DIGITS = 10

_INVISIBLE_CATEGORIES = ("Cf", "M")
"""Dropped before grouping: format characters (zero-width space and joiners, soft hyphen,
BOM, word joiner) and combining marks, which a reader does not see between two digits."""
_SEPARATOR_CATEGORIES = ("Z", "C", "P", "Sm", "Sk", "So")
"""Unicode categories that separate digit groups without ending a cluster: spaces (Z*),
control characters (Cc), all punctuation (P*: dashes, underscore, dot, slash, brackets),
mathematical, modifier and other signs (Sm, Sk, So: the minus sign, ``+``, ``~``, the
box-drawing line ``─`` and ``°`` that some fonts and keyboards offer for a dash)."""
DASH_LETTERS = frozenset("\u30fc\uff70\u2e3b")
"""Characters Unicode files as letters that are typed as dashes: the Japanese prolonged sound
mark, full and half width, which an input method in full-width mode writes for ``-``
(``１２０３８５ー１２３４``). They separate like punctuation."""
TYPED_BREAKS = frozenset({2, 4, 6})
"""Where people break a CPR number when they type it: after the day, the month, the year.
``12-03-85-1234``, ``1203-851234`` and ``120385 1234`` all break there; never inside the
serial digits, which is what a clock's ``12-01-20-15-30`` does."""


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


def is_cpr(digits: str) -> bool:
    """Whether ten ASCII digits are a CPR number: a real date, then four digits."""
    if len(digits) != CPR_DIGITS or not digits.isascii() or not digits.isdigit():
        return False
    return is_cpr_date(int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6]))


def _separates(char: str) -> bool:
    return char in DASH_LETTERS or unicodedata.category(char).startswith(_SEPARATOR_CATEGORIES)


def _invisible(char: str) -> bool:
    return unicodedata.category(char).startswith(_INVISIBLE_CATEGORIES)


def digit_clusters(text: str) -> list[list[str]]:
    """The text's digit groups (ASCII digits), clustered as described in the module docstring."""
    if text.isascii():  # NFKC leaves ASCII as it is and no ASCII character is invisible
        return [groups for run in _ASCII_CLUSTER.findall(text) if (groups := _ASCII_GROUP.findall(run))]
    clusters: list[list[str]] = []
    cluster: list[str] = []
    group: list[str] = []
    for char in unicodedata.normalize("NFKC", text):
        value = unicodedata.digit(char, None)
        if value is not None:
            group.append(str(value))
            continue
        if _invisible(char):
            continue
        if group:
            cluster.append("".join(group))
            group = []
        if not _separates(char) and cluster:
            clusters.append(cluster)
            cluster = []
    if group:
        cluster.append("".join(group))
    if cluster:
        clusters.append(cluster)
    return clusters


def candidates(text: str) -> Iterator[str]:
    """Every run of consecutive digit groups in ``text`` shaped like a typed CPR number:
    ten digits in all, broken (if at all) only at :data:`TYPED_BREAKS`."""
    for cluster in digit_clusters(text):
        for start in range(len(cluster)):
            digits = ""
            for group in cluster[start:]:
                if digits and len(digits) not in TYPED_BREAKS:
                    break
                digits += group
                if len(digits) >= CPR_DIGITS:
                    break
            if len(digits) == CPR_DIGITS:
                yield digits


_ASCII_CLUSTERED = "".join(
    c
    for c in map(chr, range(128))
    if unicodedata.digit(c, None) is not None or _invisible(c) or _separates(c)
)
_ASCII_BETWEEN = "".join(c for c in _ASCII_CLUSTERED if not c.isdigit())
"""The ASCII characters that end a digit group but not its cluster: separators (ASCII has
no invisible characters)."""
_ASCII_CLUSTER = re.compile(f"[{re.escape(_ASCII_CLUSTERED)}]+")
_ASCII_GROUP = re.compile("[0-9]+")
_ASCII_TEN_DIGIT_CLUSTER = re.compile(f"[0-9](?:[{re.escape(_ASCII_BETWEEN)}]*[0-9]){{{CPR_DIGITS - 1}}}")
"""Ten digits within one cluster of ASCII text: the least that can hold a candidate. One
scan in C (the two classes are disjoint, so it never backtracks far)."""


def may_hold_cpr(text: str) -> bool:
    """False only when ``text`` cannot hold a candidate: ASCII (which NFKC leaves as it is)
    with no cluster of ten digits. Exact, and far cheaper than clustering: the guard runs on
    every id, name and URL of every event a replay reads, and most hold no such cluster.
    When it is False, so it is for every part of ``text``."""
    return not text.isascii() or _ASCII_TEN_DIGIT_CLUSTER.search(text) is not None


def contains_cpr(text: str) -> bool:
    """Whether ``text`` holds something that looks like a Danish CPR number, however typed."""
    return may_hold_cpr(text) and any(is_cpr(digits) for digits in candidates(text))


def minted_free_of_cpr(draw: Callable[[int], str]) -> str:
    """The first of ``draw(0)``, ``draw(1)``, ... that the CPR guard lets through.

    Every id genomhub mints (submission ids, event ids, statement ids) is random or hashed
    hex, and hex reads as a CPR number now and then: ``ab120385-1234-...`` is a UUID and also
    ``120385-1234``. The guard checks ids on the bus as it checks everything else, so an id
    the system mints must never be one it would refuse; about one UUID in a few hundred is
    drawn again. A derived id stays deterministic: ``draw`` takes the attempt's number, and
    attempt 0 is the id the derivation always gave, so replays converge as before.
    """
    attempt = 0
    while contains_cpr(candidate := draw(attempt)):
        attempt += 1
    return candidate


def first_direct_identifier(fields: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first field whose value looks like a CPR number, if any."""
    for name, value in fields:
        if contains_cpr(value):
            return name
    return None


_JSON_LITERAL = re.compile(rb'"([^"]*)"[ \t\n\r]*(:?)')
"""A string literal of JSON text without escapes, and the colon that makes it a field name."""


def json_names_may_hold_cpr(document: bytes) -> bool:
    """False only when no field name of ``document`` (JSON text that parses, in UTF-8) can
    hold a CPR number: the text has no escapes, so each name is its literal as written, and
    every name is ASCII without ten digits in one cluster. Exact, and one pass in C where
    walking the parsed value costs a Python step per field; any other document is for
    :func:`json_texts` to walk.

    Without escapes every ``"`` opens or closes a literal (no byte of a multi-byte UTF-8
    character is one), so the scan from the start meets them in pairs; a literal followed by
    ``:`` (after JSON's whitespace) is a field name. JSON in UTF-16 or UTF-32, which the
    parser also reads, has a zero byte beside its first character (no UTF-8 JSON has one),
    and is walked."""
    if b"\\" in document or b"\x00" in document:
        return True
    names = b"x".join(name for name, colon in _JSON_LITERAL.findall(document) if colon)
    return not names.isascii() or _ASCII_TEN_DIGIT_CLUSTER.search(names.decode()) is not None


def json_texts(
    value: Any, *, keys_only: bool = False, digests: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str]]:
    """Every string in a parsed JSON value, the names of its fields included, each with where
    it is (``files[0].name``; a field's name is reported at the object that holds it).

    A CPR number can be sent as a field's name or inside a value of the wrong type as well as
    where it belongs, and a refusal that names the field must not then quote it. Walks
    without recursion, so no nesting depth makes it fail. The values of fields named in
    ``digests`` are left out: a SHA-256 in hex holds a CPR-shaped run of ten digits about
    once in 430, and nobody types a checksum.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                name = str(key)
                yield (path or "body"), name
                if name in digests and isinstance(child, str):
                    continue
                stack.append((f"{path}.{name}" if path else name, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))
        elif isinstance(item, str) and not keys_only:
            yield path or "body", item


def shown(part: str | int) -> str:
    """A part of a field's location fit to print: a field name that reads as a CPR number is
    replaced, since locations are echoed in error bodies, dead letters and logs."""
    if isinstance(part, str) and contains_cpr(part):
        return "<a field name that looks like a CPR number>"
    return str(part)
