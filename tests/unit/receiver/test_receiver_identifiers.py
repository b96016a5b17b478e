"""CPR detection: the two shapes, real and impossible dates, the century rule, boundaries."""

from __future__ import annotations

import pytest

from services.receiver.identifiers import century, contains_cpr, first_direct_identifier, is_cpr_date


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
