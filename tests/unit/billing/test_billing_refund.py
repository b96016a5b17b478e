"""The month close's arithmetic: January 2026 from the minutes, and its properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from services.billing.refund import (
    LineKey,
    MonthLine,
    Statement,
    allocate,
    close_month,
    event_id_of,
    forecast,
    rate_for,
    refund_ore,
    statement_id_of,
)
from services.cli import main
from shared.envelope import derive_id
from shared.events import MICRO_GE, AnalysisType, RefundCalculated, Region

CLOSED_AT = datetime(2026, 2, 3, 9, tzinfo=UTC)
JANUARY_BALANCE_ORE = 532_281_00


def line(region: Region, ge_micro: int, department: str = "Dept", received: str = "2026-01") -> MonthLine:
    return MonthLine(LineKey(region, department, AnalysisType.WGS, received), 1, ge_micro)


def january_lines() -> list[MonthLine]:
    """2,016 GE over the five regions and two departments (split does not change the total)."""
    split = {
        Region.HOVEDSTADEN: 700,
        Region.SJAELLAND: 250,
        Region.NORDJYLLAND: 166,
        Region.MIDTJYLLAND: 500,
        Region.SYDDANMARK: 400,
    }
    lines = []
    for region, ge in split.items():
        lines.append(line(region, (ge - 100) * MICRO_GE, "A"))
        lines.append(line(region, 100 * MICRO_GE, "B"))
    return lines


def test_january_2026_from_the_minutes() -> None:
    statement = close_month(
        "2026-01", january_lines(), JANUARY_BALANCE_ORE, 300, closed_at=CLOSED_AT, closed_by="finance"
    )
    assert statement.total_ge_micro == 2016 * MICRO_GE
    assert statement.rate_dkk == 264
    assert statement.total_ore == 532_224_00
    assert statement.balance_after_ore == 57_00
    assert not statement.rate_stepped_down
    assert {r.region: r.amount_ore for r in statement.regions}[Region.HOVEDSTADEN] == 700 * 264_00
    assert sum(ln.amount_ore for ln in statement.lines) == statement.total_ore


def test_january_2026_forecast_command() -> None:
    result = CliRunner().invoke(
        main,
        ["billing", "forecast", "--ge", "2016", "--balance", "532281", "--standard-rate", "300", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "rate_dkk": 264,
        "total_dkk": "532224.00",
        "balance_after_dkk": "57.00",
    }
    text = CliRunner().invoke(main, ["billing", "forecast", "--ge", "2016", "--balance", "532281"])
    assert "532.224,00 kr." in text.output and "57,00 kr." in text.output


def test_forecast_refuses_a_foreign_balance_and_bad_ge() -> None:
    foreign = CliRunner().invoke(main, ["billing", "forecast", "--ge", "1", "--balance", "100 EUR"])
    assert foreign.exit_code != 0 and "held in DKK, not EUR" in foreign.output
    bad = CliRunner().invoke(main, ["billing", "forecast", "--ge", "1.0000001", "--balance", "100"])
    assert bad.exit_code != 0 and "more than 6 decimals" in bad.output


def test_standard_rate_caps_the_rate() -> None:
    assert rate_for(10**12, 10 * MICRO_GE, 300) == 300
    assert forecast(10 * MICRO_GE, 10**12, 300).total_ore == 3000_00


def test_half_up_rounding_per_region() -> None:
    assert refund_ore(264, 500) == 13  # 13.2 øre
    assert refund_ore(1, 5_000) == 1  # 0.5 øre rounds up
    assert refund_ore(1, 4_999) == 0


def test_rate_steps_down_when_rounding_would_overdraw() -> None:
    lines = [
        line(Region.HOVEDSTADEN, 335_000),
        line(Region.SJAELLAND, 335_000),
        line(Region.SYDDANMARK, 330_000),
    ]
    assert rate_for(100, MICRO_GE, 5) == 1
    statement = close_month("2026-01", lines, 100, 5, closed_at=CLOSED_AT, closed_by="t")
    # at 1 DKK the regions would round to 34 + 34 + 33 = 101 øre, one more than the grant holds
    assert statement.rate_dkk == 0 and statement.rate_stepped_down
    assert statement.total_ore == 0 and statement.balance_after_ore == 100


def test_no_genome_equivalents_pays_nothing() -> None:
    statement = close_month("2026-03", [], 5_000_00, 300, closed_at=CLOSED_AT, closed_by="t")
    assert statement.total_ore == 0 and statement.balance_after_ore == 5_000_00 and statement.lines == ()


def test_adjustment_lines_are_marked() -> None:
    statement = close_month(
        "2026-02",
        [
            line(Region.HOVEDSTADEN, MICRO_GE, received="2026-02"),
            line(Region.HOVEDSTADEN, MICRO_GE, received="2026-01"),
        ],
        10**9,
        300,
        closed_at=CLOSED_AT,
        closed_by="t",
    )
    assert {ln.key.received_month: ln.adjustment for ln in statement.lines} == {
        "2026-01": True,
        "2026-02": False,
    }


def test_ids_are_deterministic_and_event_round_trips() -> None:
    a = close_month("2026-01", january_lines(), JANUARY_BALANCE_ORE, 300, closed_at=CLOSED_AT, closed_by="x")
    assert a.statement_id == statement_id_of("2026-01") != statement_id_of("2026-02")
    assert (
        a.event_id
        == event_id_of(a.statement_id)
        == derive_id(a.statement_id, "billing", RefundCalculated.ce_type())
    )
    assert Statement.from_document(json.loads(json.dumps(a.document()))) == a
    event = a.event()
    assert event.currency == "DKK" and event.total_ore == a.total_ore and event.key() == "2026-01"
    assert sum(r.amount_ore for r in event.regions) == event.total_ore


def test_allocate_by_largest_remainder() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(0, [5, 7]) == [0, 0]
    assert allocate(10, [0, 0]) == [0, 0]


# -- properties -------------------------------------------------------------------------
regions = st.sampled_from(list(Region))
ge_micro = st.one_of(st.integers(0, 10_000 * MICRO_GE), st.integers(0, 3 * MICRO_GE))
month_lines = st.lists(
    st.tuples(regions, st.sampled_from(["A", "B", "C"]), st.sampled_from(list(AnalysisType)), ge_micro),
    max_size=25,
    unique_by=lambda t: (t[0], t[1], t[2]),
).map(lambda items: [MonthLine(LineKey(r, d, a, "2026-01"), 1, g) for r, d, a, g in items])
balances = st.one_of(st.integers(0, 10**11), st.integers(0, 1000))
standard_rates = st.integers(0, 5000)


@settings(max_examples=400, deadline=None)
@given(month_lines, balances, standard_rates)
def test_close_properties(lines: list[MonthLine], balance: int, standard: int) -> None:
    s = close_month("2026-01", lines, balance, standard, closed_at=CLOSED_AT, closed_by="p")
    # never pays more than the balance, never a negative amount
    assert 0 <= s.total_ore <= balance
    assert s.balance_after_ore == balance - s.total_ore >= 0
    assert all(r.amount_ore >= 0 for r in s.regions) and all(ln.amount_ore >= 0 for ln in s.lines)
    # the rate never exceeds the standard rate, nor floor(balance / GE)
    assert 0 <= s.rate_dkk <= standard
    total_micro = sum(ln.ge_micro for ln in lines)
    assert s.rate_dkk <= rate_for(balance, total_micro, standard)
    # it is the formula's rate, unless rounding at that rate would overdraw the grant
    if s.rate_dkk < rate_for(balance, total_micro, standard):
        assert s.rate_stepped_down
        assert sum(refund_ore(s.rate_dkk + 1, r.ge_micro) for r in s.regions) > balance
    # region amounts follow the stated rounding rule and sum to the total
    for r in s.regions:
        assert r.amount_ore == refund_ore(s.rate_dkk, r.ge_micro)
        assert (r.amount_ore * MICRO_GE * 2 - s.rate_dkk * 100 * r.ge_micro * 2) in range(
            -MICRO_GE, MICRO_GE + 1
        )
        assert sum(ln.amount_ore for ln in s.lines if ln.key.region == r.region) == r.amount_ore
    assert sum(r.amount_ore for r in s.regions) == s.total_ore
    assert sum(r.ge_micro for r in s.regions) == s.total_ge_micro == total_micro


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**7), st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_allocate_properties(amount: int, weights: list[int]) -> None:
    shares = allocate(amount, weights)
    if sum(weights) == 0:
        assert shares == [0] * len(weights)
        return
    assert sum(shares) == amount
    for share, weight in zip(shares, weights, strict=True):
        exact_times_total = amount * weight
        assert share * sum(weights) - exact_times_total in range(-sum(weights), sum(weights) + 1)


@settings(max_examples=200, deadline=None)
@given(ge_micro, balances, standard_rates)
def test_forecast_properties(ge: int, balance: int, standard: int) -> None:
    f = forecast(ge, balance, standard)
    assert 0 <= f.total_ore <= balance and f.balance_after_ore == balance - f.total_ore
    assert 0 <= f.rate_dkk <= standard


@st.composite
def tight_months(draw: st.DrawFn) -> tuple[list[MonthLine], int, int]:
    """Months whose balance is within a few øre of rate x GE: where half-up rounding per
    region could overdraw the grant, the case random balances almost never reach."""
    chosen = draw(st.lists(regions, min_size=1, max_size=5, unique=True))
    lines = [line(r, draw(st.integers(1, 50 * MICRO_GE))) for r in chosen]
    rate = draw(st.integers(1, 400))
    exact_floor = rate * 100 * sum(ln.ge_micro for ln in lines) // MICRO_GE
    balance = exact_floor + draw(st.integers(0, 3))
    return lines, balance, draw(st.integers(rate, rate + 50))


@settings(max_examples=400, deadline=None)
@given(tight_months())
def test_close_never_overdraws_a_tight_balance(month: tuple[list[MonthLine], int, int]) -> None:
    lines, balance, standard = month
    s = close_month("2026-01", lines, balance, standard, closed_at=CLOSED_AT, closed_by="p")
    assert 0 <= s.total_ore <= balance
    assert s.total_ore == sum(refund_ore(s.rate_dkk, r.ge_micro) for r in s.regions)
    assert s.rate_dkk <= standard
