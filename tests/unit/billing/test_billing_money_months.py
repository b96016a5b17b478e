"""Amounts and months: plain DKK in, Danish out; months in Copenhagen time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.billing.money import (
    ForeignCurrency,
    MoneyError,
    dkk_to_ore,
    format_danish,
    format_ge_danish,
    parse_dkk,
)
from services.billing.months import auto_close_due, billed_month, has_ended, month_of, next_month, parse_month
from shared.events import ge_to_micro, micro_to_ge


@pytest.mark.parametrize(
    ("text", "ore"),
    [
        ("532281", 53228100),
        ("532281.5", 53228150),
        ("532281.50 DKK", 53228150),
        ("dkk 10", 1000),
        ("0.01", 1),
    ],
)
def test_plain_dkk_amounts(text: str, ore: int) -> None:
    assert parse_dkk(text) == ore


@pytest.mark.parametrize("text", ["100 EUR", "EUR 100", "12 usd", "5 SEK"])
def test_foreign_currency_is_refused(text: str) -> None:
    with pytest.raises(ForeignCurrency, match="held in DKK"):
        parse_dkk(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("532.281,00", "malformed"),
        ("532,281", "malformed"),
        ("1.234", "more than two decimals"),
        ("-5", "negative"),
        ("", "malformed"),
        ("DKK 5 DKK", "once"),
        ("1e3", "malformed"),
    ],
)
def test_malformed_amounts_are_refused(text: str, reason: str) -> None:
    with pytest.raises(MoneyError, match=reason):
        parse_dkk(text)


def test_decimal_amounts() -> None:
    assert dkk_to_ore(Decimal("532281.00")) == 53228100
    with pytest.raises(MoneyError):
        dkk_to_ore(Decimal("NaN"))


def test_danish_formatting() -> None:
    assert format_danish(123456) == "1.234,56 kr."
    assert format_danish(53222400) == "532.224,00 kr."
    assert format_danish(5) == "0,05 kr."
    assert format_danish(-5700) == "-57,00 kr."
    assert format_ge_danish(Decimal("2016")) == "2.016,00"
    assert format_ge_danish(Decimal("0.125"), 2) == "0,13"


def test_genome_equivalents_are_exact() -> None:
    assert ge_to_micro(Decimal("1.000001")) == 1_000_001
    assert micro_to_ge(1_000_001) == Decimal("1.000001")
    with pytest.raises(ValueError, match="6 decimals"):
        ge_to_micro(Decimal("0.0000001"))


def test_month_of_receipt_is_copenhagen_time() -> None:
    assert month_of(datetime(2026, 1, 31, 22, 59, tzinfo=UTC)) == "2026-01"  # 23:59 CET
    assert month_of(datetime(2026, 1, 31, 23, 0, tzinfo=UTC)) == "2026-02"  # 00:00 CET
    assert month_of(datetime(2026, 6, 30, 21, 59, tzinfo=UTC)) == "2026-06"  # 23:59 CEST
    assert month_of(datetime(2026, 6, 30, 22, 0, tzinfo=UTC)) == "2026-07"
    with pytest.raises(ValueError):
        month_of(datetime(2026, 1, 1))


def test_month_arithmetic() -> None:
    assert next_month("2026-12") == "2027-01"
    assert next_month("2026-01") == "2026-02"
    for wrong in ("2026-13", "2026-01\n", "2026-01 ", " 2026-01", "2026-1", "２０２６-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_month(wrong)
    assert not has_ended("2026-01", datetime(2026, 1, 31, 22, 59, tzinfo=UTC))
    assert has_ended("2026-01", datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
    assert not auto_close_due("2026-01", datetime(2026, 2, 4, 22, 59, tzinfo=UTC), 4)
    assert auto_close_due("2026-01", datetime(2026, 2, 4, 23, 0, tzinfo=UTC), 4)


def test_late_arrivals_go_to_the_next_open_month() -> None:
    assert billed_month("2026-01", None) == "2026-01"
    assert billed_month("2026-02", "2026-01") == "2026-02"
    assert billed_month("2026-01", "2026-01") == "2026-02"
    assert billed_month("2025-11", "2026-02") == "2026-03"
