"""CPR detection: the two shapes, real and impossible dates, the century rule, boundaries."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.identifiers import century, contains_cpr, first_direct_identifier, is_cpr_date


@pytest.mark.parametrize(
    "text",
    [
        "010190-1234",  # hyphenated, 1 January 1990
        "0101901234",  # ten digits
        "patient 311299-0001 x",  # inside other text
        "S_2902004123",  # 29 Feb 2000: seventh digit 4, year 00 -> 2000, a leap year
        "150537-5123",  # seventh digit 5, year 37 -> 2037
        "010158-5123",  # seventh digit 5, year 58 -> 1858
        "010190 1234",  # a space instead of the hyphen
    ],
)
def test_finds_cpr_numbers_with_valid_dates(text: str) -> None:
    assert contains_cpr(text)


@pytest.mark.parametrize(
    "text",
    [
        "320190-1234",  # day 32
        "011390-1234",  # month 13
        "000190-1234",  # day 0
        "3102901234",  # 31 February
        "2902001234",  # 29 Feb 1900: seventh digit 1 -> 1900, not a leap year
        "2902994123",  # 29 Feb 1999 (seventh digit 4, year 99 -> 1999)
        "01019012345",  # eleven digits: a barcode, not a CPR number
    ],
)
def test_ignores_impossible_dates_and_longer_runs(text: str) -> None:
    assert not contains_cpr(text)


def test_ten_digits_between_separators_count() -> None:
    assert contains_cpr("S-0101901234-7")
    assert not contains_cpr("S-01019012345")
    assert not contains_cpr("NGC-SAMPLE-000123")


@pytest.mark.parametrize(
    ("year2", "seventh", "expected"),
    [(90, 0, 1900), (36, 4, 2000), (37, 4, 1900), (36, 9, 2000), (37, 9, 1900), (57, 6, 2000), (58, 8, 1800)],
)
def test_century_rule(year2: int, seventh: int, expected: int) -> None:
    assert century(year2, seventh) == expected


def test_leap_days() -> None:
    assert is_cpr_date(29, 2, 0, 4)  # 2000
    assert not is_cpr_date(29, 2, 0, 3)  # 1900
    assert is_cpr_date(29, 2, 96, 0)  # 1996


def test_names_the_first_field() -> None:
    fields = [("sample_id", "S1"), ("patient_id", "0101901234"), ("department", "010190-1234")]
    assert first_direct_identifier(fields) == "patient_id"
    assert first_direct_identifier([("sample_id", "S1")]) is None


# -- what people type (issue 12, item 6) ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "120385\u20131234",  # en dash
        "120385\u22121234",  # minus sign
        "120385\u00a01234",  # non-breaking space
        "120385\u200b1234",  # zero-width space
        "1203\u00ad851234",  # soft hyphen
        "120385_1234",  # underscore
        "120385.1234",  # dot
        "120385  1234",  # two spaces
        "12-03-85-1234",
        "12.03.85-1234",
        "P-\uff11\uff12\uff10\uff13\uff18\uff15-\uff11\uff12\uff13\uff14",  # full-width digits
        "\u0661\u0662\u0660\u0663\u0668\u0665\u0661\u0662\u0663\u0664",  # Arabic-Indic digits
        "7-1203851234",  # a stray digit group before: not a barcode
        "7 120385-1234",
        "1203-85-1234",
        "12-0385 1234",
    ],
)
def test_finds_cpr_numbers_as_people_type_them(text: str) -> None:
    assert contains_cpr(text)


@pytest.mark.parametrize(
    "text",
    [
        "12038512345",  # an unbroken eleven-digit barcode
        "S-2026-0001-0042",  # no ten-digit run of groups
        "NGC-SAMPLE-000123",
        "run 12-03 lane 85-1234",  # letters end a cluster
        "execution_trace_2026-12-01_20-15-30.txt",  # a timestamp: five pairs, not a CPR shape
        "12-01-20-15-30",
        "32-03-85-1234",  # day 32
    ],
)
def test_leaves_barcodes_and_non_dates_alone(text: str) -> None:
    assert not contains_cpr(text)


DIGIT_ZEROS = (0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1D7CE, 0x1D7EC)
"""Zero of ASCII, full-width, Arabic-Indic, extended Arabic-Indic, Devanagari, Bengali, Thai
and two mathematical digit sets: each script's digits follow its zero."""
SEPARATORS = (
    "-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", " ", "  ", "\u00a0", "\u202f",
    "\u2009", "\t", "_", ".", "/", ", ", "\u200b", "\u00ad", "\u2060", "\ufeff", " - ",
    "\u30fc", "\uff70", "\u2500", "\u00b0", "\u00a6", "\u3000",
)  # fmt: skip
INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u0301")


def cpr_digits(moment: date, seventh: int, serial: str) -> str:
    return f"{moment:%d%m}{moment.year % 100:02d}{seventh}{serial}"


@st.composite
def valid_cprs(draw: st.DrawFn) -> str:
    """A CPR number: a date of 1858-2057 and a seventh digit whose century gives that date."""
    moment = draw(st.dates(min_value=date(1858, 1, 1), max_value=date(2057, 12, 31)))
    seventh = draw(
        st.sampled_from(
            [s for s in range(10) if century(moment.year % 100, s) + moment.year % 100 == moment.year]
        )
    )
    return cpr_digits(moment, seventh, draw(st.from_regex(r"\A[0-9]{3}\Z")))


@st.composite
def not_cprs(draw: st.DrawFn) -> str:
    """Ten digits whose first six are no date in the century the seventh digit gives."""
    digits = draw(st.from_regex(r"\A[0-9]{10}\Z"))
    assume(not is_cpr_date(int(digits[:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6])))
    return digits


@st.composite
def typed(draw: st.DrawFn, digits: str) -> str:
    """``digits`` as a person might type or paste them, inside an id of letters.

    Visible separators go where people put them (after the day, the month, the year);
    invisible characters anywhere; each digit in the script of the string or in ASCII.
    """
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    glyphs = [chr(zero + int(d)) if draw(st.booleans()) else d for d in digits]
    out = []
    for i, glyph in enumerate(glyphs):
        if i in (2, 4, 6) and draw(st.integers(0, 2)) == 0:
            out.append(draw(st.sampled_from(SEPARATORS)))
        if i and draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from(INVISIBLE)))
        out.append(glyph)
    prefix = draw(st.sampled_from(["", "S-", "patient ", "P_", "x.", "7 "]))
    suffix = draw(st.sampled_from(["", "_R1.fastq.gz", " x", "-A", "-7"]))
    return prefix + "".join(out) + suffix


@settings(max_examples=400)
@given(st.data())
def test_property_every_rendering_of_a_cpr_number_is_caught(data: st.DataObject) -> None:
    assert contains_cpr(data.draw(typed(data.draw(valid_cprs()))))


@settings(max_examples=400)
@given(st.data())
def test_property_ten_digits_that_are_no_date_are_not_caught(data: st.DataObject) -> None:
    assert not contains_cpr(data.draw(typed(data.draw(not_cprs()))))


@given(valid_cprs(), st.from_regex(r"\A[0-9]{1,6}\Z"), st.booleans())
def test_property_an_unbroken_longer_run_is_a_barcode(cpr: str, extra: str, before: bool) -> None:
    run = extra + cpr if before else cpr + extra
    assert not contains_cpr(f"LAB{run}X")
    assert contains_cpr(f"LAB{extra}-{cpr}X" if before else f"LAB{cpr}-{extra}X")
